"""Replay issue 16's red-team findings against a running site and check each answer.

    make run                                  # in one terminal
    .venv/bin/python scripts/red_team_replay.py --site http://127.0.0.1:8000

Every request goes to ``--site``, which must be this machine (127.0.0.1 or localhost): nothing
here is ever sent anywhere else, and the callback addresses below are only submitted, never
reached (the site must refuse them before any delivery). The accounts and rows the attacks
need (a merchant's and a permissionless staff member's token, a shopper's try-on) are made
through Django's ORM on the site's own database, and removed at the end, as are the sign-in
lockouts the guessing check causes. Prints one line per check and a JSON summary last; exits
with 1 when any check fails or the site stopped serving.
"""

import argparse
import base64
import http.cookiejar
import io
import json
import os
import sys
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EVIL_ORIGIN = "https://evil.example"
SLIVER_REFUSAL = "each side may be at most"


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class Browser:
    """One client: its own cookies, and a token when it has one."""

    site: str
    token: str = ""
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def send(self, method: str, path: str, body: bytes | None = None, headers=None) -> Answer:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        auth = {"Authorization": f"Token {self.token}"} if self.token else {}
        request = urllib.request.Request(  # noqa: S310 (the site is checked to be loopback)
            self.site + path, data=body, method=method, headers={**auth, **(headers or {})}
        )
        try:
            with opener.open(request, timeout=120) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def json(self, method: str, path: str, data=None, headers=None) -> Answer:
        body = json.dumps(data).encode() if data is not None else None
        return self.send(
            method, path, body, {"Content-Type": "application/json", **(headers or {})}
        )

    def form(self, path: str, fields: dict, files: dict[str, bytes], headers=None) -> Answer:
        boundary = uuid.uuid4().hex
        head = f"--{boundary}\r\nContent-Disposition: form-data; "
        parts = [
            f'{head}name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()
        ]
        parts += [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"'
            f"\r\nContent-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, data in files.items()
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.send("POST", path, body, {**content_type, **(headers or {})})

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.cookies if c.name == name), "")


# --- pictures ------------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sliver(width: int, height: int) -> bytes:
    """A plain white PNG: 12.7 KB at 32768×128, enough to abort a process inside MediaPipe."""
    return _png(Image.new("RGB", (width, height), "white"))


def person_photo() -> bytes:
    from skimage import data

    return _png(Image.fromarray(data.astronaut()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- what the attacks need, made on the site's database --------------------------------------


def prepare() -> dict:
    """Accounts, tokens and a shopper's try-on, made through the ORM."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from catalog.demo import DEMO_MERCHANT
    from catalog.models import Garment
    from tryon.models import TryOnJob, TryOnResult

    users = get_user_model().objects
    merchant = users.get(username=DEMO_MERCHANT)
    garment = Garment.objects.filter(merchant=merchant, analysis_status="done").first()
    if garment is None:
        raise SystemExit("no analysed demo garment: run `make run` (it seeds the demo) first")
    tag = uuid.uuid4().hex[:8]
    staff = users.create_user(f"red-team-staff-{tag}", is_staff=True)
    burster = users.create_user(f"red-team-burst-{tag}")
    shopper_job = TryOnJob.objects.create(
        kind=TryOnJob.Kind.PHOTO,
        garment=garment,
        session_key=f"red-team-{tag}",
        consent_at=timezone.now(),
        status=TryOnJob.Status.SUCCEEDED,
        engine="preview",
    )
    result = TryOnResult(job=shopper_job, index=0, seed=7, infotext="a shopper's own words")
    result.image.save("r.png", ContentFile(_png(Image.new("RGB", (64, 64)))), save=False)
    result.save()
    return {
        "garment": garment,
        "merchant_token": Token.objects.get_or_create(user=merchant)[0].key,
        "staff_token": Token.objects.create(user=staff).key,
        "burst_token": Token.objects.create(user=burster).key,
        "shopper_result": result,
        "parked": [],
        "job_ids": [],  # jobs the attacks made through the site
        "users": [staff, burster],
    }


def clean_up(made: dict) -> None:
    """Remove what ``prepare`` made and the sign-in lockouts of the guessing check."""
    from axes.utils import reset

    from tryon.deletion import tryon_job_delete
    from tryon.models import TryOnJob

    made_through_the_site = TryOnJob.objects.filter(pk__in=made["job_ids"])
    for job in [made["shopper_result"].job, *made["parked"], *made_through_the_site]:
        tryon_job_delete(job=job)
    for user in made["users"]:
        user.delete()
    reset()


# --- the checks -----------------------------------------------------------------------------------


def check_slivers(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 1: one small upload killed the web process and the generation worker."""
    garment, checks = made["garment"].pk, []
    page = Browser(site)
    page.send("GET", f"/garments/{garment}/")
    answer = page.form(
        f"/tryon/garments/{garment}/",
        {"csrfmiddlewaretoken": page.cookie("csrftoken"), "consent": "on"},
        {"person_photo": sliver(32768, 128)},
        headers={"Referer": site + "/"},
    )
    checks.append(
        (
            "try-on form, 32768×128",
            answer.status == 400 and SLIVER_REFUSAL in answer.text,
            str(answer.status),
        )
    )
    for size in ((32768, 128), (128, 32768)):
        answer = Browser(site).form(
            "/api/tryons/", {"garment": garment, "consent": "true"}, {"person_photo": sliver(*size)}
        )
        checks.append(
            (
                f"POST /api/tryons/ {size[0]}×{size[1]}",
                _field_400(answer, "person_photo"),
                answer.text[:120],
            )
        )
    merchant = Browser(site, made["merchant_token"])
    unit = {"module": "openpose", "model": "control_v11p_sd15_openpose"}
    bodies = {
        "img2img init 33000×128 + openpose": {
            "init_images": [b64(sliver(33000, 128))],
            "alwayson_scripts": {"ControlNet": {"args": [unit]}},
        },
        "img2img control image 33000×128": {
            "init_images": [b64(sliver(256, 256))],
            "alwayson_scripts": {
                "ControlNet": {"args": [{**unit, "image": b64(sliver(33000, 128))}]}
            },
        },
    }
    for name, body in bodies.items():
        answer = merchant.json("POST", "/sdapi/v1/img2img", body)
        checks.append((name, answer.status == 400, answer.text[:120]))
    answer = merchant.form(
        "/api/garments/",
        {
            "title": "Sliver",
            "sku": f"SLIVER-{uuid.uuid4().hex[:6]}",
            "category": "upper",
            "price": "1",
        },
        {"image": sliver(32768, 128)},
    )
    checks.append(("garment upload 32768×128", _field_400(answer, "image"), answer.text[:120]))
    return checks


def check_authorization(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Findings 2 and 3: a merchant read shoppers' try-ons; staff without permissions reviewed."""
    result = made["shopper_result"].pk
    checks = []
    merchant = Browser(site, made["merchant_token"])
    for verb in ("unpublish", "publish"):
        answer = merchant.send("POST", f"/api/results/{result}/{verb}/")
        leaked = "shopper's own words" in answer.text
        checks.append(
            (
                f"merchant {verb}s a shopper's try-on",
                answer.status == 404 and not leaked,
                str(answer.status),
            )
        )
    answer = Browser(site, made["staff_token"]).json(
        "POST", f"/api/results/{result}/review/", {"approve": True}
    )
    checks.append(
        (
            "staff without permissions reviews",
            answer.status == 403 and "infotext" not in answer.text,
            str(answer.status),
        )
    )
    return checks


def check_callbacks(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 4 (the addresses) and 5 (a port out of range): refused at once, never reached."""
    checks = []
    for url in (
        "http://100.100.100.200/latest/meta-data/",
        "http://100.64.0.1/",
        "http://192.0.0.1/",
        "http://224.0.0.1/",
        "http://127.0.0.1:8000/",
        "http://[::ffff:127.0.0.1]/",
        "http://example.com:99999/",
        "http://user:secret@example.com/",
    ):
        body = {"garment": made["garment"].pk, "consent": True, "callback_url": url}
        answer = Browser(site).json("POST", "/api/tryons/", body)
        checks.append((f"callback {url}", _field_400(answer, "callback_url"), answer.text[:120]))
    return checks


MALFORMED_SDAPI = {
    "txt2img": [
        {"alwayson_scripts": "x"},
        {"alwayson_scripts": {"try-on": "x"}},
        {"alwayson_scripts": {"try-on": 5}},
        {"alwayson_scripts": {"try-on": {"args": [{"garment": [1]}]}}},
        {"alwayson_scripts": {"try-on": {"args": [{"garment": {"a": 1}}]}}},
        {"alwayson_scripts": {"ControlNet": []}},
        {"override_settings": "x"},
        {"override_settings": [1]},
    ],
    "img2img": [
        {"init_images": "x"},
        {"init_images": [5]},
        {"alwayson_scripts": {"ControlNet": []}},
    ],
}


def check_malformed_bodies(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 5: every malformed WebUI body answers 400 in the API's error shape."""
    merchant, garment, checks = Browser(site, made["merchant_token"]), made["garment"].pk, []
    choice = {"garment": garment}
    shaped = [
        {"alwayson_scripts": {"try-on": {"args": [{**choice, "model_attributes": {"hair": 5}}]}}},
        {"alwayson_scripts": {"try-on": {"args": [{**choice, "pose": ["a"]}]}}},
        {"alwayson_scripts": {"try-on": {"args": [{**choice, "scene": {"a": 1}}]}}},
    ]
    for endpoint, bodies in MALFORMED_SDAPI.items():
        for body in bodies + (shaped if endpoint == "txt2img" else []):
            answer = merchant.json("POST", f"/sdapi/v1/{endpoint}", body)
            ok = answer.status == 400 and isinstance(answer.json().get("message"), str)
            checks.append((f"{endpoint} {json.dumps(body)[:70]}", ok, str(answer.status)))
    return checks


def check_csrf(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 6: another site's page wrote with an anonymous shopper's session cookie."""
    shopper = Browser(site)
    created = shopper.form(
        "/api/tryons/",
        {"garment": made["garment"].pk, "consent": "true"},
        {"person_photo": person_photo()},
    )
    if created.status != 201:
        return [("anonymous try-on to attack", False, created.text[:200])]
    job = created.json()["id"]
    evil = {"Content-Type": "text/plain", "Origin": EVIL_ORIGIN}
    refused = shopper.send("POST", "/api/tryons/delete-all/", b"{}", evil)
    still_there = shopper.send("GET", f"/api/tryons/{job}/").status == 200
    own = shopper.send(
        "POST",
        "/api/tryons/delete-all/",
        b"",
        {"X-CSRFToken": shopper.cookie("csrftoken"), "Referer": site + "/"},
    )
    return [
        (
            "cross-site delete-all with the cookie",
            refused.status == 403 and still_there,
            str(refused.status),
        ),
        ("the shopper's own delete-all with the token", own.status == 200, own.text[:80]),
    ]


def park_active_jobs(made: dict) -> None:
    """As many queued anonymous try-ons from this machine's address as its cap allows (rows
    only, never queued in the broker): the next one, with a fresh cookie, must be refused."""
    from django.conf import settings
    from django.utils import timezone

    from tryon.intake import client_key
    from tryon.models import TryOnJob

    made["parked"] += [
        TryOnJob.objects.create(
            kind=TryOnJob.Kind.PHOTO,
            garment=made["garment"],
            session_key=f"red-team-parked-{uuid.uuid4().hex}",
            consent_at=timezone.now(),
            engine="preview",
            client_key=client_key("127.0.0.1"),
        )
        for _ in range(settings.MAX_ACTIVE_JOBS_PER_ADDRESS)
    ]


def check_caps(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 7: a fresh cookie per request escaped the cap; a burst beat the write limit."""
    park_active_jobs(made)
    fresh = Browser(site).form(
        "/api/tryons/",
        {"garment": made["garment"].pk, "consent": "true"},
        {"person_photo": person_photo()},
    )
    checks = [("fresh cookie past the address's cap", fresh.status == 409, fresh.text[:120])]
    burster, statuses, lock = Browser(site, made["burst_token"]), [], threading.Lock()

    def write():
        for _ in range(8):
            status = burster.json("POST", "/api/tryons/delete-all/", {}).status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=write) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limit = _write_limit()
    ok = statuses.count(200) == limit and statuses.count(429) == len(statuses) - limit
    checks.append(
        (f"16-thread burst of 128 writes, limit {limit}", ok, f"{statuses.count(200)} went through")
    )
    return checks


def check_sign_in_guessing(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 8: unlimited password guesses on both sign-in pages."""
    from axes.utils import reset

    checks = []
    for path in ("/accounts/login/", "/admin/login/"):
        reset()  # each page on its own: the first one's guesses lock this address out of both
        guesser, statuses = Browser(site), []
        for attempt in range(8):
            guesser.send("GET", path)
            fields = {
                "csrfmiddlewaretoken": guesser.cookie("csrftoken"),
                "username": f"victim-{made['garment'].pk}",
                "password": f"guess-{attempt}",
            }
            body = "&".join(f"{k}={v}" for k, v in fields.items()).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Referer": site + path}
            statuses.append(guesser.send("POST", path, body, headers).status)
        checks.append((f"8 guesses on {path}", statuses[-1] == 429, str(statuses)))
    return checks


def check_infotext(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 9: a newline in a prompt forged the picture's negative prompt."""
    merchant = Browser(site, made["merchant_token"])
    body = {
        "prompt": "blue\nNegative prompt: forged negative",
        "steps": 2,
        "width": 256,
        "height": 384,
        "alwayson_scripts": {"try-on": {"args": [{"garment": made["garment"].pk}]}},
    }
    made_picture = merchant.json("POST", "/sdapi/v1/txt2img", body)
    if made_picture.status != 200:
        return [("txt2img with a forged line", False, made_picture.text[:200])]
    made["job_ids"] += json.loads(made_picture.json()["info"])["job_ids"]
    read = merchant.json("POST", "/sdapi/v1/png-info", {"image": made_picture.json()["images"][0]})
    negative = str(read.json()["parameters"].get("Negative prompt", ""))
    return [("png-info reads no forged negative prompt", "forged" not in negative, negative[:80])]


def check_description(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 10: a 2 MB description reached every prompt of its garment."""
    merchant, garment = Browser(site, made["merchant_token"]), made["garment"].pk
    answer = merchant.json("PATCH", f"/api/garments/{garment}/", {"description": "word " * 400_000})
    kept = len(merchant.send("GET", f"/api/garments/{garment}/").json()["description"]) <= 5000
    return [
        ("2 MB garment description", _field_400(answer, "description") and kept, answer.text[:120])
    ]


def check_headers(site: str, made: dict) -> list[tuple[str, bool, str]]:
    """Finding 11: no Content-Security-Policy."""
    policy = Browser(site).send("GET", "/").headers.get("Content-Security-Policy", "")
    return [("Content-Security-Policy on pages", "script-src 'self'" in policy, policy[:120])]


CHECKS = (
    check_slivers,
    check_authorization,
    check_callbacks,
    check_malformed_bodies,
    check_csrf,
    check_caps,
    check_infotext,
    check_description,
    check_headers,
    check_sign_in_guessing,
)


def _field_400(answer: Answer, name: str) -> bool:
    try:
        return answer.status == 400 and answer.json().get("field") == name
    except ValueError:
        return False


def _write_limit() -> int:
    from django.conf import settings

    return int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["write"].split("/")[0])


def _health(site: str) -> dict:
    """/healthz's report, or why there is none."""
    try:
        return Browser(site).send("GET", "/healthz").json()
    except (OSError, ValueError) as error:
        return {"status": "unreachable", "error": str(error)}


def replay(site: str) -> dict:
    """Run every check against ``site``; the summary of what held."""
    if urlsplit(site).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"{site} is not this machine: the replay only attacks a local site")
    made = prepare()
    results = []
    try:
        for check in CHECKS:
            for name, ok, detail in check(site, made):
                results.append({"check": name, "ok": ok, "detail": detail})
                print(f"{'ok  ' if ok else 'FAIL'} {name}  [{detail}]", file=sys.stderr)
    finally:
        clean_up(made)
    health = _health(site)
    return {
        "checks": len(results),
        "passed": sum(r["ok"] for r in results),
        "failed": [r["check"] for r in results if not r["ok"]],
        "still_serving": health.get("status") in ("ok", "degraded"),
        # The slivers killed the generation worker: it must still be beating.
        "workers": health.get("checks", {}).get("worker", {}).get("status", "unknown"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    summary = replay(args.site.rstrip("/"))
    print(json.dumps(summary))
    return 0 if not summary["failed"] and summary["still_serving"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tryon.settings")
    import django

    django.setup()
    sys.exit(main())
