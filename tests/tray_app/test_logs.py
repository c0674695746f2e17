"""The app's log file: rotated, and tokens never reach it."""

from __future__ import annotations

import logging

import pytest

from tray_app.logs import LOG_BACKUPS, configure_logging

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjozfQ.c2lnbmF0dXJlLXNlY3JldA"


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers, root.level = handlers, level


def test_tokens_are_redacted_in_messages_arguments_and_tracebacks(tmp_path, root_logger, capsys):
    path = configure_logging("INFO", directory=tmp_path)
    log = logging.getLogger("tray_app.test")
    log.info("refreshed with %s", TOKEN)
    log.warning("Authorization: Bearer %s", TOKEN)
    try:
        raise RuntimeError(f"failed for token={TOKEN}")
    except RuntimeError:
        log.exception("a request failed")
    for handler in root_logger.handlers:
        handler.flush()
    text = path.read_text()
    assert "refreshed with" in text
    assert "a request failed" in text
    assert TOKEN not in text
    assert TOKEN not in capsys.readouterr().err
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_the_file_rotates(tmp_path, root_logger, monkeypatch):
    monkeypatch.setattr("tray_app.logs.LOG_FILE_BYTES", 2_000)
    path = configure_logging("INFO", directory=tmp_path)
    log = logging.getLogger("tray_app.test")
    for n in range(500):
        log.info("line %d %s", n, "x" * 40)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "tray-notifier.log"
    assert len(files) == 1 + LOG_BACKUPS
    assert path.stat().st_size <= 2_000


def test_libraries_that_log_contents_stay_quiet_even_in_debug(tmp_path, root_logger):
    path = configure_logging("DEBUG", directory=tmp_path)
    logging.getLogger("tray_app.engine").debug("our own debug line")
    logging.getLogger("websockets.client").debug('< TEXT \'{"title": "Payroll is late"}\'')
    logging.getLogger("desktop_notifier.main").info("Notification sent: Payroll is late")
    for handler in root_logger.handlers:
        handler.flush()
    text = path.read_text()
    assert "our own debug line" in text
    assert "Payroll" not in text
