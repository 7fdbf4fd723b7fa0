"""The deploy guide and .env.example keep up with the settings the code reads.

An engineer stands the site up from docs/deploy.md without reading the code: a setting added
to tryon/settings.py or gunicorn.conf.py and not described there would be a setting nobody
knows to set, and a line in .env.example that no code reads would be a setting that does
nothing.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where the processes read their environment.
SOURCES = ("tryon/settings.py", "gunicorn.conf.py")
# Read by libraries, not by our code: boto3's credentials.
READ_BY_LIBRARIES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
READ = re.compile(r"""(?:env(?:\.\w+)?|environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def _read_by_the_code() -> set[str]:
    return {name for source in SOURCES for name in READ.findall((ROOT / source).read_text())}


def test_the_reader_finds_the_settings():
    # Guards the pattern itself: were it to match nothing, the tests below would pass empty.
    read = _read_by_the_code()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "AWS_STORAGE_BUCKET_NAME", "WEB_BIND"} <= read
    assert len(read) > 50


def test_every_setting_the_code_reads_is_in_the_deploy_guide():
    guide = (ROOT / "docs/deploy.md").read_text()
    missing = {name for name in _read_by_the_code() if not re.search(rf"\b{name}\b", guide)}
    assert not missing, f"describe these in docs/deploy.md: {sorted(missing)}"


def test_every_line_of_the_env_example_is_a_setting_the_code_reads():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.M))
    assert {"AWS_PRIVATE_STORAGE_BUCKET_NAME", "CELERY_VISIBILITY_TIMEOUT", "WEB_BIND"} <= named
    unknown = named - _read_by_the_code() - READ_BY_LIBRARIES
    assert not unknown, f".env.example names settings nothing reads: {sorted(unknown)}"
