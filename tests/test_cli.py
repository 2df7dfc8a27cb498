import pytest
from click.testing import CliRunner

from harness.cli import main

COMMANDS = [["data", "synth"], ["pretrain"], ["finetune"], ["teachers"], ["cache-teachers"], ["distill"],
            ["ablation"], ["table1"], ["table2"], ["speed"], ["bench"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help(cmd):
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main " + " ".join(cmd) in result.output
