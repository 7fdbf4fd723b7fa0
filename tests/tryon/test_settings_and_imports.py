"""Process-level rules: safe settings outside DEBUG, and no torch in a web process."""

from tests.processes import run_python

HEAVY_MODULES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "controlnet_aux",
    "segment_anything",
)


def test_production_settings_refuse_the_development_secret_key():
    result = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DJANGO_DEBUG="false",
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false" in result.stderr


def test_production_settings_need_allowed_hosts_too():
    result = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
    )
    assert "DJANGO_ALLOWED_HOSTS must be set" in result.stderr


def test_production_settings_start_when_everything_is_set():
    result = run_python(
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_ALLOWED_HOSTS="shop.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_production_settings_pass_the_deploy_check_with_three_variables():
    production = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "k3y-" + "x7Q" * 20,
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    }
    code = (
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])"
    )
    result = run_python(code, DJANGO_SETTINGS_MODULE="tryon.settings", **production)
    assert result.returncode == 0, result.stdout + result.stderr
    headers = run_python(
        "import django; django.setup(); from django.test import Client; "
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "c = Client(); r = c.get('/', secure=True, HTTP_HOST='shop.example.com'); "
        "print(r['Strict-Transport-Security']); "
        "print(c.get('/', HTTP_HOST='shop.example.com').status_code, "
        "c.get('/', HTTP_HOST='shop.example.com', HTTP_X_FORWARDED_PROTO='https').status_code)",
        DJANGO_SETTINGS_MODULE="tryon.settings",
        DATABASE_URL="sqlite:///:memory:",
        **production,
    )
    assert headers.returncode == 0, headers.stderr
    hsts, statuses = headers.stdout.split("\n")[:2]
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert statuses == "301 200"  # plain HTTP is sent to HTTPS; the proxy's HTTPS is trusted


def test_production_trusts_one_proxys_address_in_x_forwarded_for():
    production = {
        "DJANGO_SETTINGS_MODULE": "tryon.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    }
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.REST_FRAMEWORK['NUM_PROXIES'])"
    )
    assert run_python(code, **production).stdout.strip() == "1"
    assert run_python(code, **production, DJANGO_BEHIND_PROXY="false").stdout.strip() == "0"
    development = run_python(code, DJANGO_SETTINGS_MODULE="tryon.settings", DJANGO_DEBUG="true")
    assert development.stdout.strip() == "0"


def test_the_web_process_never_imports_torch(tmp_path):
    code = (
        "import sys\n"
        "from tryon.wsgi import application\n"
        "from django.core.management import call_command\n"
        "from django.test import Client\n"
        "call_command('migrate', verbosity=0)\n"
        "import catalog.tasks, pipelines.garment, pipelines.person, pipelines.warp\n"
        "import tryon.intake, tryon.runner, tryon.review, tryon.deletion, tryon.housekeeping, "
        "tryon.tasks, tryon.admin, pipelines.tryon, pipelines.scenes\n"
        "client = Client()\n"
        "for url in ('/', '/healthz', '/accounts/login/', '/admin/login/', '/api/garments/',\n"
        "            '/api/schema/', '/api/poses/', '/tryon/'):\n"
        "    assert client.get(url).status_code == 200, url\n"
        f"loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print(','.join(loaded) or 'none')\n"
    )
    result = run_python(
        code,
        DJANGO_DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none"


def test_the_shared_helpers_do_not_build_the_celery_app():
    """Scripts and benches use the file and upload helpers without the project: importing them
    loads neither the try-on app nor Celery (the project package builds the Celery app, so that
    Django's processes find it; tests/test_layering.py keeps ``common`` below both apps)."""
    code = (
        "import sys\n"
        "import common.storage, common.uploads, common.upload_handlers, common.roles, "
        "common.forms, common.ratelimit\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'tryon', 'catalog'}))\n"
    )
    result = run_python(code, DJANGO_SETTINGS_MODULE="tryon.settings", DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
