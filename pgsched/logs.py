"""Log setup: readable lines for people, one JSON object per line for production."""

from __future__ import annotations

import sys

from loguru import logger


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    logger.remove()
    if json:
        logger.add(sys.stderr, level=level, serialize=True)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
            "<cyan>{extra[component]}</cyan> {message}",
        )
    logger.configure(extra={"component": "pgsched"})
