"""Defaults shared by the config and the modules it configures, with no imports at all.

The config reads them for its defaults, and the modules use them when called
without a config, so neither has to import the other: the config does not pull
in the seed parser, and the parse workers do not pull in the config.
"""

from __future__ import annotations

DEFAULT_EXTENSIONS = (".txt", ".md", ".yaml", ".yml")
"""Seed files are the files with these suffixes (`seeds.extensions`)."""
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
"""A seed file larger than this is refused unread (`seeds.max_file_bytes`)."""
DEFAULT_DIGEST_SIZE = 10
"""Stories in one day's digest at most (`digests.size`)."""
DEFAULT_DIGEST_DAYS = 14
"""Closed days a digest feed keeps (`digests.days`)."""
DEFAULT_DIGEST_TIMEZONE = "UTC"
"""The time zone whose midnights close the digests' days (`digests.timezone`)."""
