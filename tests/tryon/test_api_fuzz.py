"""Schemathesis fuzzes every operation of the OpenAPI schema (``/api/schema/``).

For each operation, Hypothesis generates requests from the schema (valid ones, then invalid
ones) and sends them, in process, to the Django WSGI application: anonymously, with a token
that is not valid, as a shopper, a merchant or a staff member (token auth), and as a merchant
signed in by session cookie. Real garments, jobs and results exist, so detail endpoints get
real ids as well as made-up ones; and hand-written valid requests (random data almost never
is one: it takes a real picture and a real garment), each also with one field changed, reach
the 2xx paths and the checks deep inside. Every response must

- not be a server error (``not_a_server_error``),
- have a status code that the schema documents (``status_code_conformance``), and
- have a content type and a body that conform to the schema for that status
  (``content_type_conformance``, ``response_schema_conformance``).

Why the programmatic API (``schemathesis.openapi.from_wsgi``, ``operation.as_strategy()``,
``case.call()``, ``case.validate_response()``) and not ``@schema.parametrize()``: the
schemathesis pytest plugin breaks on pytest 9 (``'Function' object has no attribute
'_nodeid'``). Driving Hypothesis here also lets each example run inside a savepoint that is
rolled back (a DELETE does not take the rows away from the examples after it), and keeps the
run derandomized (the same requests every run) and bounded in time (about 30 s of requests).

The test's transaction is never committed, so on-commit work (Celery tasks: a garment's
analysis, a job's run) does not happen: a job made here stays queued.
"""

import base64
import time
from collections import Counter
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common.api_errors import ScopedByMethodThrottle
from tests.conftest import photo_upload, product_shot_upload
from tests.factories import GarmentFactory, TryOnJobFactory, TryOnResultFactory, UserFactory
from tryon.models import TryOnJob, TryOnResult

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and generation mode: 18 operations, in process, keep the whole test
# near a minute on two cores. (Hypothesis stops early for operations with few inputs.)
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 9}


@pytest.fixture
def wsgi_app(settings, monkeypatch):
    """The Django WSGI application, called in this thread, inside the test's transaction."""
    from django.core.wsgi import get_wsgi_application

    settings.ALLOWED_HOSTS = ["localhost"]
    # A fuzzer is a very busy client: it would meet 429 within a second. The throttle keeps its
    # rates in a class attribute, read at import, which a settings override does not reach.
    monkeypatch.setattr(ScopedByMethodThrottle, "THROTTLE_RATES", {"read": None, "write": None})
    # As Django's test client does: a request must not close the connection that holds the
    # test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(analysed_garment, merchant, admin_user, settings):
    """Who calls, the ids that exist, and valid requests."""
    settings.TRYON_ENGINE = "preview"
    shopper = UserFactory(username="shopper")
    other_garment = GarmentFactory()
    model_shot = TryOnJobFactory(
        garment=analysed_garment, status=TryOnJob.Status.SUCCEEDED, progress=1.0
    )
    approved = TryOnResultFactory(job=model_shot, review_status=TryOnResult.Review.APPROVED)
    pending = TryOnResultFactory(job=model_shot)
    queued = TryOnJobFactory(garment=analysed_garment)
    shopper_job = TryOnJobFactory(
        garment=analysed_garment, owner=shopper, status=TryOnJob.Status.SUCCEEDED
    )
    callers = {
        "anonymous": {},
        "a token that is not valid": {"headers": {"Authorization": "Token not-a-key"}},
        # Signed in by session cookie, without the CSRF token: reads, and refused writes.
        "merchant by session": {
            "cookies": {django_settings.SESSION_COOKIE_NAME: _session(merchant)}
        },
    }
    for name, user in {"shopper": shopper, "merchant": merchant, "staff": admin_user}.items():
        key = Token.objects.create(user=user).key
        callers[name] = {"headers": {"Authorization": f"Token {key}"}}
    ids = {
        "/api/garments/": [analysed_garment.pk, other_garment.pk],
        "/api/tryons/": [str(job.pk) for job in (model_shot, queued, shopper_job)],
        "/api/results/": [approved.pk, pending.pk],
    }
    photo = base64.b64encode(photo_upload().read()).decode()
    new_garment = {
        "title": "Fuzzed tee", "sku": "FUZZ-1", "category": "upper", "price": "12.00",
        "image": product_shot_upload().read(),
    }  # fmt: skip
    model_shot_request = {
        "kind": "model_shot", "garment": analysed_garment.pk, "pose": "three_quarter",
        "scene": "beach", "count": 2, "params": FAST,
        "model_attributes": {"gender_presentation": "masculine", "hair": "short"},
    }  # fmt: skip
    photo_request = {
        "garment": analysed_garment.pk, "person_photo_base64": photo, "consent": True,
        "params": FAST,
    }  # fmt: skip
    multipart, json = "multipart/form-data", "application/json"
    garment, result, job = {"id": analysed_garment.pk}, {"id": approved.pk}, {"id": model_shot.pk}
    valid = {
        "POST /api/tryons/": [
            Valid("merchant", model_shot_request, json),
            Valid("anonymous", photo_request, json),
        ],
        "POST /api/garments/": [Valid("merchant", new_garment, multipart)],
        "PUT /api/garments/{id}/": [Valid("merchant", new_garment, multipart, garment)],
        "PATCH /api/garments/{id}/": [
            Valid("merchant", {"title": "Renamed", "price": "9.50"}, json, garment)
        ],
        "DELETE /api/garments/{id}/": [Valid("merchant", path_parameters=garment)],
        "POST /api/results/{id}/review/": [
            Valid("staff", {"approve": True, "note": "ok"}, json, result)
        ],
        "POST /api/results/{id}/publish/": [Valid("merchant", path_parameters=result)],
        "GET /api/tryons/{id}/": [Valid("merchant", path_parameters=job)],
        "POST /api/tryons/{id}/cancel/": [Valid("merchant", path_parameters={"id": queued.pk})],
        "DELETE /api/tryons/{id}/": [Valid("merchant", path_parameters=job)],
    }
    return World(callers, ids, valid)


class World(NamedTuple):
    callers: dict  # name -> what its requests carry: case.call()'s headers and cookies
    ids: dict  # path prefix -> ids that exist
    valid: dict  # operation -> [Valid]


def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class Valid(NamedTuple):
    """A request that succeeds, and who sends it."""

    caller: str
    body: dict | None = None
    media_type: str | None = None
    path_parameters: dict = {}


# Any JSON value, for a field of a valid request made invalid.
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=4,
)
LEFT_OUT = object()


def _requests(operation, mode, callers, ids, valid):
    """``(caller, case)`` for one operation, from these strategies in turn:

    - generated from the schema, from any caller;
    - for a detail path, the same at an id that exists;
    - a valid request from its caller (positive mode only), and the same with one field
      changed: set, replaced or left out, as the schema allows (positive mode) or not
      (negative mode: any JSON value, also one level down, in a JSON object's field). Random
      data alone seldom gets past the first field checked, so this is what reaches the checks
      deeper down (parameters, model attributes, pictures...).
    """
    anyone = st.sampled_from(sorted(callers))
    cases = [st.tuples(anyone, operation.as_strategy(generation_mode=mode))]
    if "{id}" in operation.path:
        known = next(pks for prefix, pks in ids.items() if operation.path.startswith(prefix))
        at_known = st.sampled_from(known).flatmap(
            lambda pk: operation.as_strategy(generation_mode=mode, path_parameters={"id": pk})
        )
        cases.append(st.tuples(anyone, at_known))
    for request in valid.get(operation.label, []):
        sent_by = st.just(request.caller)
        body = {} if request.body is None else {"body": request.body}
        as_is = operation.as_strategy(
            media_type=request.media_type, path_parameters=request.path_parameters, **body
        )
        if request.body is None:
            changed = None
        elif mode == GenerationMode.NEGATIVE and request.media_type == "application/json":
            leaves = [(name,) for name in request.body] + [
                (name, key)
                for name, value in request.body.items()
                if isinstance(value, dict)
                for key in value
            ]
            changed = st.tuples(as_is, st.sampled_from(leaves), ANY_JSON | st.just(LEFT_OUT)).map(
                lambda drawn, request=request: _with_leaf(*drawn, request)
            )
        else:
            generated = operation.as_strategy(
                generation_mode=mode,
                media_type=request.media_type,
                path_parameters=request.path_parameters,
            )
            changed = st.tuples(generated, st.integers(min_value=0)).map(
                lambda drawn, request=request: _one_field_from(*drawn, request)
            )
        if mode == GenerationMode.POSITIVE:
            cases.append(st.tuples(sent_by, as_is))
        if changed is not None:
            cases.append(st.tuples(sent_by, changed))
    return st.one_of(cases)


def _one_field_from(case, number, request):
    """``case`` with the valid request's body, but for one field (chosen by ``number`` among
    the valid fields and the generated ones) as the case has it: set, changed or left out."""
    generated = case.body if isinstance(case.body, dict) else {}
    names = sorted(set(request.body) | set(generated))
    name = names[number % len(names)]
    body = dict(request.body)
    if name in generated:
        body[name] = generated[name]
    else:
        del body[name]
    case.body = body
    case.media_type = request.media_type
    return case


def _with_leaf(case, path, value, request):
    """``case`` with the valid request's body, but ``value`` at ``path`` (or nothing there)."""
    body = {
        name: dict(value) if isinstance(value, dict) else value
        for name, value in request.body.items()
    }
    *outer, name = path
    container = body[outer[0]] if outer else body
    if value is LEFT_OUT:
        del container[name]
    else:
        container[name] = value
    case.body = body
    return case


def _reaches(operation, response) -> bool:
    """Whether the request went to ``operation``'s view (a made-up id may route elsewhere)."""
    path = unquote(urlsplit(response.request.url).path)
    expected = resolve(operation.path.replace("{id}", "1")).func
    try:
        return resolve(path).func is expected
    except Resolver404:
        return False


def _has_inputs(operation) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)


def _fuzz(operation, mode, world, seen):
    """Run Hypothesis over ``operation``'s requests in ``mode``; a failed check raises."""
    callers, ids, valid = world

    @hypothesis_settings(
        # More where valid requests make the deeper cases.
        max_examples=EXAMPLES[mode] * (3 if operation.label in valid else 1),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(request=_requests(operation, mode, callers, ids, valid))
    def run(request):
        caller, case = request
        # Each example sees the rows as the fixture made them: a DELETE is undone.
        with transaction.atomic():
            response = case.call(**callers[caller])
            transaction.set_rollback(True)
        seen[operation.label, response.status_code] += 1
        if not _reaches(operation, response):
            # An invalid id such as "1.5" or "a/b" makes a URL that the router does not
            # match: the API's catch-all answers, with its JSON error.
            assert response.status_code == 404, response.status_code
            assert set(response.json()) == {"message"}
            return
        case.validate_response(response, checks=CHECKS, headers=callers[caller].get("headers"))

    run()


# The valid requests carry pictures, which Hypothesis finds too long to describe.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_the_api_answers_every_generated_request_as_its_schema_says(wsgi_app, world, subtests):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation but the schema's own (schemathesis leaves that out).
    assert len(operations) == sum(len(item) for item in schema.raw_schema["paths"].values()) - 1
    assert set(world.valid) <= {operation.label for operation in operations}
    seen = Counter()
    started = time.monotonic()
    for operation in operations:
        for mode in EXAMPLES:
            if mode == GenerationMode.NEGATIVE and not _has_inputs(operation):
                continue  # nothing to make invalid: Hypothesis would find it unsatisfiable
            with subtests.test(msg=f"{operation.label} {mode.value}"):
                _fuzz(operation, mode, world, seen)
    print(
        f"\n{len(operations)} operations, {sum(seen.values())} requests "
        f"in {time.monotonic() - started:.1f}s; status codes seen:"
    )
    for label in sorted({label for label, _ in seen}):
        print(f"  {label}: {sorted(code for name, code in seen if name == label)}")
