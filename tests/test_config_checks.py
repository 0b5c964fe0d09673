"""Bad input fails before anything loads: each key a user types most (src.config), keys the code never reads,
zero-step runs, and Hydra's own failures (src.config.hydra_errors), each as one `error: ... Fix: ...` line and
exit 2; every config the repository ships passes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from src.system.errors import UserError
from tests.helpers.commands import REPO, check_eval, check_train, run_cli

CONF = REPO / "conf"
PAPER_TASKS = sorted(p.stem for p in (CONF / "paper" / "rothe2020").glob("*.yaml") if p.stem != "figures")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# ---- every shipped config passes -------------------------------------------------------------------------------
def shipped_train_configs() -> list[list[str]]:
    """Every experiment, every task (the paper's tasks also as paper=rothe2020 runs them), trainer and optimizer."""
    cell = ["data=xsum", "variant=bert2bert"]
    runs = [[f"experiment={e}", *(cell if e == "rothe_grid" else [])] for e in options("experiment")]
    runs += [[f"data={d}"] for d in options("data")]
    runs += [["paper=rothe2020", f"data={t}", "variant=bert2bert"] for t in PAPER_TASKS]
    runs += [[f"trainer={t}"] for t in options("trainer")] + [
        [f"optimizer={o}"] for o in options("optimizer")
    ]
    runs += [["hparams_search=optuna", "experiment=demo"]]
    return runs


SHIPPED = shipped_train_configs()


@pytest.mark.parametrize("overrides", SHIPPED, ids=[" ".join(o) for o in SHIPPED])
def test_every_config_the_repository_ships_passes(overrides):
    check_train(*overrides)


def test_every_eval_config_passes():
    for task in [[], *([f"data={d}"] for d in options("data"))]:
        check_eval(*task)


# ---- each rule: the key, the value given, what is valid, a fix -------------------------------------------------
BAD_VALUES = [
    # (overrides, what the message names)
    (["data.batch_size=0"], ["data.batch_size=0", "a positive integer", "Fix: data.batch_size="]),
    (["data.batch_size=abc"], ["data.batch_size=abc", "a positive integer"]),
    (["data.batch_size=null"], ["data.batch_size=null", "null only with data.global_batch_size set"]),
    (["data.global_batch_size=-8"], ["data.global_batch_size=-8", "a positive integer", "or null"]),
    (["data.eval_batch_size=0"], ["data.eval_batch_size=0", "a positive integer"]),
    (
        ["paper=rothe2020", "data=xsum", "variant=bert2bert", "data.eval_batch_size=null"],
        ["data.eval_batch_size=null", "when that is set"],
    ),
    (
        ["trainer.max_steps=-2"],
        ["trainer.max_steps=-2", "a positive integer", "-1 (trainer.max_epochs decides)"],
    ),
    (["trainer.max_steps=1.5"], ["trainer.max_steps=1.5", "a positive integer"]),
    (["trainer.max_steps=-1"], ["trainer.max_steps=-1", "trainer.max_epochs, which is null", "1000 epochs"]),
    (["trainer.max_steps=-1", "trainer.max_epochs=-1"], ["trainer.max_steps=-1", "never stop"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0 trains nothing", "Fix:"]),
    (["trainer.max_epochs=-3"], ["trainer.max_epochs=-3", "a positive integer, -1 (no epoch limit) or null"]),
    (["optimizer.lr=abc"], ["optimizer.lr=abc", "a positive number", "Fix: optimizer.lr="]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "a positive number"]),
    (["optimizer.lr=-1e-4"], ["optimizer.lr=-0.0001", "a positive number"]),
    (["optimizer.warmup_steps=-1"], ["optimizer.warmup_steps=-1", "an integer >= 0"]),
    (["optimizer.warmup_steps=1.5"], ["optimizer.warmup_steps=1.5", "an integer >= 0"]),
    (
        ["optimizer=adam_rsqrt", "optimizer.warmup_steps=0"],
        ["optimizer.warmup_steps=0", "a positive integer", "divides by it"],
    ),
    (["optimizer.name=sgd"], ["optimizer.name=sgd", "adam_rsqrt or adamw_linear"]),
    (["data.decoding.num_beams=0"], ["data.decoding.num_beams=0", "a positive integer", "or null"]),
    (
        ["data.decoding.max_new_tokens=0"],
        ["data.decoding.max_new_tokens=0", "a positive integer", "or null"],
    ),
    (
        ["data.max_source_length=0"],
        ["data.max_source_length=0", "an integer >= 3", "special tokens included"],
    ),
    (["data.max_source_length=1"], ["data.max_source_length=1", "an integer >= 3"]),  # [CLS] x [SEP]
    (["data.max_target_length=-5"], ["data.max_target_length=-5", "an integer >= 2"]),
    (["data.max_target_length=1"], ["data.max_target_length=1", "an integer >= 2"]),  # a token and EOS
    (["trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val=-1", "a gradient norm >= 0", "Fix:"]),
    (["trainer.gradient_clip_val=abc"], ["trainer.gradient_clip_val=abc", "a gradient norm >= 0"]),
    (["monitor_mode=maximum"], ["monitor_mode=maximum", "min or max", "Fix: monitor_mode=min"]),
    (["skip_nonfinite_max_share=2"], ["skip_nonfinite_max_share=2", "a share in [0, 1]"]),
    (["label_smoothing=1"], ["label_smoothing=1", "a number in [0, 1)", "Fix: label_smoothing=0.1"]),
    (["label_smoothing=-0.1"], ["label_smoothing=-0.1", "a number in [0, 1)"]),
    (["ckpt_path=a.ckpt", "warm_start_from=b.ckpt"], ["ckpt_path and warm_start_from are both set", "Fix:"]),
    (["data.limit_train=0"], ["data.limit_train=0", "a positive integer", "or null"]),
    (["data.limit_eval=-1"], ["data.limit_eval=-1", "a positive integer", "or null"]),
    (["data.train_fraction=1.5"], ["data.train_fraction=1.5", "(0, 1]"]),
    (["trainer.precision=bf17"], ["trainer.precision=bf17", "one of auto, 16-mixed, bf16-mixed, 32-true"]),
    (["trainer.precision=16.5"], ["trainer.precision=16.5", "one of auto"]),
    (["trainer.val_check_interval=0"], ["trainer.val_check_interval=0", "a positive integer", "(0, 1]"]),
    (["trainer.val_check_interval=1.5"], ["trainer.val_check_interval=1.5", "(0, 1]"]),
    (["trainer.accumulate_grad_batches=0"], ["trainer.accumulate_grad_batches=0", "a positive integer"]),
    (["seed=abc"], ["seed=abc", "an integer in [0, 4294967295]", "Fix: seed=42"]),
    (["seed=-1"], ["seed=-1", "an integer in [0, 4294967295]", "random seed"]),
    (["seed=1.5"], ["seed=1.5", "an integer"]),
    # a task's budget and recipe are refused under their own key, not the trainer or optimizer key reading them
    (["data.weight_decay=-1"], ["data.weight_decay=-1.0 is not valid", "a number >= 0"]),
    (["data.max_steps=0"], ["data.max_steps=0 is not valid", "Fix: data.max_steps="]),
    (["logger.kind=foo"], ["logger.kind=foo is not valid", "wandb, tensorboard, csv or none"]),
]


@pytest.mark.parametrize("overrides,needles", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_bad_value_names_the_key_the_value_the_range_and_a_fix(overrides, needles):
    with pytest.raises(UserError) as err:
        check_train(*overrides)
    message = str(err.value)
    assert all(n in message for n in needles), message
    assert "\n" not in message and "Fix:" in message


GOOD_VALUES = [
    ["data.batch_size=null", "data.global_batch_size=32"],
    ["data.eval_batch_size=null"],  # falls back to data.batch_size
    ["trainer.max_steps=-1", "trainer.max_epochs=3"],
    ["trainer.max_epochs=-1"],  # no epoch limit: the steps decide
    ["optimizer.lr=1"],
    ["optimizer.warmup_steps=0"],  # adamw_linear's schedule takes no warmup
    ["trainer.precision=16"],
    ["trainer.precision=bf16-mixed"],
    ["trainer.precision=null"],
    ["trainer.val_check_interval=0.25"],
    ["trainer.val_check_interval=null"],
    ["data.decoding.num_beams=null", "data.decoding.max_new_tokens=null"],
    [
        "data.limit_train=3"
    ],  # smaller than one batch: one partial batch a step (no drop_last), the steps all run
    ["trainer.fast_dev_run=1"],  # any lightning.Trainer argument
    ["trainer.limit_train_batches=0.5"],
    ["seed=0"],
    ["trainer.gradient_clip_val=0"],  # no clipping
    ["trainer.gradient_clip_val=null"],
    ["monitor_mode=max", "monitor=val/rouge2"],
    ["skip_nonfinite_max_share=0"],
    ["label_smoothing=0.1"],
]


@pytest.mark.parametrize("overrides", GOOD_VALUES, ids=[" ".join(o) for o in GOOD_VALUES])
def test_good_values_pass(overrides):
    check_train(*overrides)


# ---- zero-step runs and budgets the data cannot fill -----------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["trainer.max_steps=0"], ["trainer.max_steps=0 trains nothing", "Fix: a positive number of steps"]),
        (["trainer.limit_train_batches=0"], ["trainer.limit_train_batches=0 trains nothing"]),
        (
            [
                "trainer=ddp",
                "trainer.accelerator=cpu",
                "data.limit_train=10",
            ],  # 1 batch of 16 for 2 processes
            ["data.limit_train=10", "2 processes", "nothing would train", "Fix: data.limit_train=17 or more"],
        ),
        (
            ["data.synthetic.num_train=40", "trainer.max_epochs=2"],  # 3 batches of 16 an epoch: 6 steps
            [
                "trainer.max_epochs=2",
                "at most 6 optimizer steps",
                "trainer.max_steps=1000",
                "trainer.max_steps=6",
            ],
        ),
        (
            ["data.limit_train=64", "trainer.max_epochs=1", "trainer.accumulate_grad_batches=2"],
            ["at most 2 optimizer steps", "trainer.accumulate_grad_batches=2"],
        ),
        (
            ["paper=rothe2020", "data=xsum", "variant=bert2bert", "trainer.devices=3"],
            ["data.global_batch_size=128", "3 device(s)"],  # the run's own batch check, now before the load
        ),
    ],
)
def test_a_run_that_would_train_nothing_or_end_early_is_refused_with_the_reason(overrides, needles):
    with pytest.raises(UserError) as err:
        check_train(*overrides)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_a_budget_the_data_can_fill_passes():
    check_train("data.limit_train=64", "trainer.max_epochs=1", "trainer.max_steps=4")
    check_train("trainer=ddp", "trainer.accelerator=cpu", "data.limit_train=17")


# ---- keys the code never reads ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override,needles",
    [
        ("+trainer.max_step=3", ["+trainer.max_step=3", "not a key of trainer", "Fix: trainer.max_steps=3"]),
        ("+data.batch_sise=8", ["+data.batch_sise=8", "not a key of data", "Fix: data.batch_size=8"]),
        ("+data.nosuch=1", ["+data.nosuch=1", "not a key of data", "Fix: drop +data.nosuch"]),
        ("+optimizer.learning_rate=1e-4", ["+optimizer.learning_rate=0.0001", "not a key of optimizer"]),
        ("+optimizer.warmup=10", ["Fix: optimizer.warmup_steps=10"]),
        ("+trainer.logger=false", ["trainer.logger is set by the project", "Fix: use logger="]),
        ("+trainer.callbacks=[]", ["trainer.callbacks is set by the project", "callbacks= group"]),
        ("+trainer.enable_progress_bar=false", ["progress=rich|plain|none"]),
        (
            "+trainer.fast_dev_run=1",
            ["trainer.fast_dev_run is a key already", "Fix: trainer.fast_dev_run=VALUE"],
        ),
    ],
)
def test_a_key_added_that_the_code_never_reads_is_refused_with_the_closest(override, needles):
    with pytest.raises(UserError) as err:
        check_train(override)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_a_decoding_key_the_code_never_reads_is_refused():
    with pytest.raises(UserError, match=r"num_beam is not a key of data.decoding.*data.decoding.num_beams=2"):
        check_train("+data.decoding.num_beam=2")


# ---- src.eval's keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["eval_batch_size=0"], ["eval_batch_size=0", "a positive integer", "or null"]),
        (["precision=fp8"], ["precision=fp8", "null (the run's), one of auto"]),
        (["decoding.num_beams=0"], ["decoding.num_beams=0", "or null"]),
        (
            ["decoding.num_beem=1"],
            ["decoding.num_beem is not a key of decoding", "Fix: decoding.num_beams=1"],
        ),
        (["data=synthetic", "data.limit_eval=0"], ["data.limit_eval=0"]),
        (["data=synthetic", "+data.limit_test=4"], ["+data.limit_test=4", "Fix: data.limit_eval=4"]),
    ],
)
def test_eval_refuses_its_bad_keys(overrides, needles):
    with pytest.raises(UserError) as err:
        check_eval(*overrides)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_eval_takes_what_trains_nothing():
    # src.eval evaluates: a task's training keys (a global batch with batch_size null) are not its concern
    check_eval("data=xsum", "data.batch_size=null", "eval_batch_size=8", "precision=32-true")


# ---- Hydra's own failures: one line, exit 2 (src.config.hydra_errors) ------------------------------------------
@pytest.fixture
def train_entry(monkeypatch, tmp_path):
    """`python -m src.train ARGS` in this process, through hydra_entry: (args) -> (exit code, stderr lines)."""
    import src.train
    from src.config.hydra_errors import hydra_entry

    def composed(cfg):  # a config that composed: nothing of these tests should get here
        raise AssertionError(f"composed: {cfg.trainer}")

    monkeypatch.setattr(src.train, "train_or_skip", composed)
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")  # config_path relative to src/train.py, as with -m
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    entry = hydra_entry(src.train.main)

    def call(capsys, *args: str) -> tuple[int, list[str]]:
        dirs = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
        # a sweep sets up logging (onto this test's captured stderr) before its jobs compose
        quiet = ["hydra/hydra_logging=none", "hydra/job_logging=none"]
        monkeypatch.setattr(sys, "argv", ["src/train.py", *args, *dirs, *quiet])
        with pytest.raises(SystemExit) as exited:
            entry()
        return exited.value.code, capsys.readouterr().err.strip().splitlines()

    return call


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["trainer.max_step=3"],
            [
                "trainer.max_step is not a key of trainer",
                "Did you mean trainer.max_steps?",
                "Fix: trainer.max_steps=3",
                "+trainer.max_step=3 would add a key the code never reads",
            ],
        ),
        (["sed=1"], ["sed is not a top-level key", "Did you mean seed?", "Fix: seed=1"]),
        (["encoer=bert"], ["Did you mean encoder?", "Fix: encoder=bert"]),
        # a misspelt group under its key: the fix keeps the key (not "data=8")
        (
            ["dta.batch_size=8"],
            ["dta is not a top-level key", "Did you mean data?", "Fix: data.batch_size=8"],
        ),
        (["-m", "optimizer.lrr=1,2"], ["Did you mean optimizer.lr?"]),  # a sweep's job
        (["--cfg", "job", "trainer.max_step=3"], ["Did you mean trainer.max_steps?"]),
        (
            ["+trainer.fast_dev_run=1"],
            ["trainer.fast_dev_run is a key already", "Fix: trainer.fast_dev_run=VALUE, without the +"],
        ),
        (["trainer.logger=false"], ["trainer.logger is set by the project", "logger=<option>"]),
        (
            ["data=nosuch"],
            [
                "Could not find 'data/nosuch'",
                "data=nosuch is not an option of data",
                "Fix: data=<one of cnn_dailymail, ",
                "synthetic",
                "xsum>",
            ],
        ),
        (["experiment=dem"], ["experiment=dem is not an option", "Did you mean experiment=demo?"]),
        # an earlier spelling names its new form
        (["experiment=paper"], ["experiment=paper is now paper=rothe2020", "Fix: paper=rothe2020"]),
        (
            ["data.generation.num_beams=4"],
            ["data.generation is now data.decoding", "Fix: data.decoding.num_beams=4"],
        ),
        (
            ["trainer.max_steps=["],
            ["cannot read the override 'trainer.max_steps=['", "Fix: write it as key=value"],
        ),
        (
            ["data.decoding.num_beams=abc"],
            [
                "data.decoding.num_beams=abc is not valid",
                "could not be converted to Integer",
                "a positive integer",
            ],
        ),
    ],
)
def test_hydra_failures_are_one_error_line_and_exit_2(train_entry, capsys, args, needles):
    code, lines = train_entry(capsys, *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(n in lines[0] for n in needles), lines[0]
    assert "Traceback" not in lines[0] and "HYDRA_FULL_ERROR" not in lines[0]


def test_hydra_entry_leaves_the_task_and_hydra_as_they_were(tmp_path, monkeypatch, capsys):
    """A tiny app: a config that composes runs the task; the task's own exceptions are Hydra's to report; Hydra's
    reporting is restored after the call; HYDRA_FULL_ERROR=1 still shows the exception itself."""
    import hydra
    import hydra._internal.utils as hydra_utils
    from hydra.errors import ConfigCompositionException

    from src.config.hydra_errors import hydra_entry

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.yaml").write_text("steps: 1\nfail: false\n")
    ran = []

    @hydra_entry
    @hydra.main(version_base="1.3", config_path=str(tmp_path / "conf"), config_name="app")
    def app(cfg):
        if cfg.fail:
            raise ConfigCompositionException("the task's own")
        ran.append(cfg.steps)

    original = hydra_utils.run_and_report
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    logging_off = ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={tmp_path / 'out'}"]

    monkeypatch.setattr(sys, "argv", ["app.py", "steps=3", *logging_off])
    app()
    assert ran == [3] and hydra_utils.run_and_report is original

    monkeypatch.setattr(sys, "argv", ["app.py", "fail=true", *logging_off])
    with pytest.raises(SystemExit) as exited:
        app()
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "the task's own" in err and "error: " not in err  # Hydra's report
    assert hydra_utils.run_and_report is original

    monkeypatch.setattr(sys, "argv", ["app.py", "step=3", *logging_off])
    with pytest.raises(SystemExit) as exited:
        app()
    assert exited.value.code == 2 and "Did you mean steps? Fix: steps=3" in capsys.readouterr().err

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match="Could not override 'step'"):
        app()
    assert hydra_utils.run_and_report is original


# ---- the commands: one line, exit 2, before a model loads ------------------------------------------------------
@pytest.mark.parametrize(
    "override,needle",
    [
        ("data.batch_size=0", "error: data.batch_size=0 is not valid"),
        ("optimizer.lr=abc", "error: optimizer.lr=abc is not valid"),
        ("trainer.max_steps=0", "error: trainer.max_steps=0 trains nothing"),
    ],
)
def test_the_command_refuses_before_anything_loads(tmp_path: Path, override, needle):
    proc = run_cli("src.train", override, "logger=none", f"hydra.run.dir={tmp_path}", timeout=300)
    out = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, out[-3000:]
    assert len(errors) == 1 and errors[0].startswith(needle) and "Fix:" in errors[0], out[-3000:]
    assert "Traceback" not in out
    # nothing loaded: no seed set, no Trainer built (Lightning's banner), no model or data
    assert not any(s in out for s in ("Seed set", "GPU available", "synthetic/train", "parameters")), out[
        -3000:
    ]
