"""Daemon logging: one line per event, journald priorities, no tracebacks for expected faults."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from riffengine.errors import UserError
from riffengine.logs import LineFormatter, expect, is_expected, setup_logging, under_journald


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_journald_lines_carry_priorities_and_no_tracebacks(restore_root):
    out = io.StringIO()
    setup_logging("DEBUG", stream=out, journald=True)
    log = logging.getLogger("riffengine.test")
    log.debug("tick")
    log.info("playing")
    log.warning("render late")
    log.error("recording stopped")
    log.critical("gone")
    try:
        raise UserError("alpha: 1.5 is out of range; use a number from 0 to 1")
    except UserError:
        log.exception("OSC refused")
    assert lines_of(out) == [
        "<7>riffengine.test: tick",
        "<6>riffengine.test: playing",
        "<4>riffengine.test: render late",
        "<3>riffengine.test: recording stopped",
        "<2>riffengine.test: gone",
        "<3>riffengine.test: OSC refused: alpha: 1.5 is out of range; use a number from 0 to 1",
    ]


def test_unexpected_exception_keeps_its_traceback_on_one_line(restore_root):
    out = io.StringIO()
    setup_logging("INFO", stream=out, journald=True)
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("riffengine.x").exception("handler failed\non two lines")
    (line,) = lines_of(out)
    assert line.startswith("<3>riffengine.x: handler failed | on two lines | Traceback")
    assert "KeyError: 'missing'" in line and "test_logs.py" in line


def test_known_fault_classes_by_name_and_by_registration(restore_root):
    class OutOfMemoryError(RuntimeError):
        pass

    class RecorderDiskFull(OSError):
        pass

    class Derived(OutOfMemoryError):
        pass

    assert is_expected(UserError("x")) and is_expected(Derived("y"))
    assert not is_expected(RecorderDiskFull("z"))
    expect(RecorderDiskFull)
    assert is_expected(RecorderDiskFull("z"))
    out = io.StringIO()
    setup_logging("INFO", stream=out, journald=False)
    try:
        raise Derived("CUDA out of memory. Tried to allocate 2.00 GiB")
    except RuntimeError:
        logging.getLogger("riffengine.render").exception("render failed")
    (line,) = lines_of(out)
    assert line.endswith(" ERROR riffengine.render: render failed: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "Traceback" not in line and not line.startswith("<")


def test_levels_filter_and_a_second_setup_replaces_the_first(restore_root):
    first, second = io.StringIO(), io.StringIO()
    setup_logging("WARNING", stream=first, journald=True)
    logging.getLogger("a").info("hidden")
    logging.getLogger("a").warning("shown")
    setup_logging("info", stream=second, journald=True)
    logging.getLogger("a").info("now shown")
    assert lines_of(first) == ["<4>a: shown"]
    assert lines_of(second) == ["<6>a: now shown"]
    with pytest.raises(UserError, match="log level 'loud' is unknown"):
        setup_logging("loud", stream=io.StringIO())


def test_journald_detection_compares_the_stream(tmp_path):
    path = tmp_path / "stderr.log"
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        assert under_journald({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not under_journald({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f)
        assert under_journald({"INVOCATION_ID": "0123abcd"}, f)
        assert not under_journald({}, f)
    assert under_journald({"JOURNAL_STREAM": "8:1234"}, io.StringIO())  # no file to compare


def test_a_process_under_a_journal_stream_writes_priorities(tmp_path):
    """A child whose stderr is the file JOURNAL_STREAM names logs with <N> prefixes."""
    path = tmp_path / "journal"
    code = (
        "import logging; from riffengine.logs import setup_logging; setup_logging('INFO'); "
        "logging.getLogger('riffengine').warning('osc flood')"
    )
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([sys.executable, "-c", code], stderr=f, env=env, check=True, timeout=60)
    assert path.read_text() == "<4>riffengine: osc flood\n"


def test_plain_formatter_has_time_and_level():
    record = logging.LogRecord("riffengine", logging.INFO, __file__, 1, "bar %d", (3,), None)
    line = LineFormatter(journald=False).format(record)
    assert line.endswith(" INFO riffengine: bar 3") and line[:4].isdigit()


def test_the_default_handler_writes_to_the_stderr_of_the_moment(restore_root, monkeypatch):
    """A stderr replaced (and closed) after setup is no error: records go to the current one."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("INFO", journald=True)
    logging.getLogger("riffengine").warning("one")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("riffengine").warning("two")
    assert lines_of(second) == ["<4>riffengine: two"]
