"""Helpers shared by the command-line tests: run ``mist`` in-process and check a user error."""

from mistnet import cli


def mist(capsys, *argv) -> tuple[int, str, str]:
    """Run ``mist *argv`` in this process; return (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(result, *fragments: str) -> None:
    """A user error: exit 2, one line on stderr containing every fragment, no traceback."""
    rc, _, err = result
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
