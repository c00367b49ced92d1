"""Validation before any work: a preset is checked completely (types, values, every task
built from its ``task_params``) when it is loaded, and a bad one is one line naming the
file and the field, exit 2, with no directory made and no worker started."""

import pytest

from universality.cli import main
from universality.pipeline.config import PRESETS, Preset, PresetError, load_preset

BASE = {"tasks": '["flipflop"]', "archs": '["gru"]', "activations": '["tanh"]', "hidden": "[8]", "seeds": "2",
        "steps": "60"}


def toml(**fields):
    """A preset file's text: BASE with ``fields`` replaced (None drops one); ``task_params``
    is given as the text of its tables."""
    params = fields.pop("task_params", None)
    lines = [f"{k} = {v}" for k, v in {**BASE, **fields}.items() if v is not None]
    return "\n".join(lines) + "\n" + (params or "")


LIST = "expected a non-empty list"


@pytest.mark.parametrize("fields, field, says", [
    ({"hidden": '"big"'}, "hidden", LIST),
    ({"hidden": "8"}, "hidden", LIST),
    ({"hidden": "[8.5]"}, "hidden", "positive integers"),
    ({"hidden": "[8, 8]"}, "hidden", "without repeats"),
    ({"hidden": "[true]"}, "hidden", "positive integers"),
    ({"seeds": '"2"'}, "seeds", "an integer >= 1"),
    ({"seeds": "2.5"}, "seeds", "an integer >= 1"),
    ({"lr": '"fast"'}, "lr", "a finite number > 0"),
    ({"lr": "nan"}, "lr", "a finite number > 0"),
    ({"l2": "[nan]"}, "l2", "finite numbers >= 0"),
    ({"l2": "[-1e-4]"}, "l2", "finite numbers >= 0"),
    ({"tasks": '"flipflop"'}, "tasks", f"{LIST} of names without repeats, got 'flipflop'"),  # not letter by letter
    ({"archs": '["gru", 3]'}, "archs", LIST),
    ({"archs": '["gru", "mamba"]'}, "archs", "unknown task/arch/activation ['mamba']"),
    ({"batch_size": "0"}, "batch_size", "an integer >= 1"),
    ({"min_steps": "100"}, "min_steps", "exceeds steps"),
    ({"name": "5"}, "name", "a non-empty string"),
    ({"task_params": "task_params = 5\n"}, "task_params", "a table of tables"),
    ({"task_params": "[task_params]\nflipflop = 5\n"}, "task_params", "a table of tables"),
    ({"task_params": "[task_params.sine]\nn_freqs = 3\n"}, "task_params", "tasks not in the preset ['sine']"),
    ({"task_params": "[task_params.flipflop]\ncolour = 1\n"}, "task_params.flipflop", "unknown parameters ['colour']"),
    ({"task_params": "[task_params.flipflop]\nn_bits = 0\n"}, "task_params.flipflop", "n_bits must be an int >= 1"),
    ({"task_params": '[task_params.flipflop]\np_pulse = "often"\n'}, "task_params.flipflop", "p_pulse"),
    ({"tasks": '["cdi"]', "task_params": "[task_params.cdi]\nnoise = -0.5\n"}, "task_params.cdi", "noise"),
])
def test_a_bad_preset_is_one_line_naming_file_and_field_before_any_work(tmp_path, capsys, fields, field, says):
    preset = tmp_path / "bad.toml"
    preset.write_text(toml(**fields))
    out = tmp_path / "run"
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{preset}: {field}: " in err and says in err, err
    assert not out.exists()  # refused before any directory or worker


def test_a_preset_file_that_is_not_utf8_is_named(tmp_path, capsys):
    preset = tmp_path / "latin1.toml"
    preset.write_bytes(toml().encode() + b"# caf\xe9\n")
    assert main(["run", "--preset", str(preset), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{preset}: not UTF-8 text" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_same_checks_hold_for_check_and_for_presets_made_in_python(tmp_path, capsys):
    preset = tmp_path / "bad.toml"
    preset.write_text(toml(seeds="2.5"))
    assert main(["check", "torch.nn:GRUCell", "--preset", str(preset), "--out", str(tmp_path / "c")]) == 2
    assert f"{preset}: seeds:" in capsys.readouterr().err and not (tmp_path / "c").exists()
    with pytest.raises(PresetError, match="^task_params.flipflop: .*n_bits"):
        Preset(name="x", tasks=("flipflop",), task_params={"flipflop": {"n_bits": 0}})
    with pytest.raises(PresetError, match="^l2: "):
        Preset(name="x", l2=(float("inf"),))


def test_good_presets_load_unchanged(tmp_path):
    preset = tmp_path / "good.toml"
    preset.write_text(toml(l2="[0, 1e-4]", task_params="[task_params.flipflop]\np_pulse = 0.1\n"))
    loaded = load_preset(str(preset))
    assert loaded.l2 == (0, 1e-4) and loaded.hidden == (8,) and loaded.task("flipflop").p_pulse == 0.1
    assert {name: load_preset(name) for name in PRESETS} == PRESETS


@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "inf"), ("--l2", "inf"), ("--l2", "nan")])
def test_train_refuses_non_finite_numbers_before_making_a_directory(tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert main(["train", "--task", "flipflop", "--arch", "gru", flag, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "finite" in err and flag in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
