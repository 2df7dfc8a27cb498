"""Shared by the speed reports: a list of result lines printed at the end of the session
(pytest-benchmark's table has no room for ratios and sizes)."""

import pytest

_REPORT = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def report_lines(request):
    """Append lines here; they are printed under "feature store report" at the end."""
    return request.config.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.write_sep("-", "feature store report")
        for line in lines:
            terminalreporter.write_line(line)
