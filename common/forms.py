"""Form and service errors both apps use: a pipeline's refusal as a Django ``ValidationError``
(the services' error shape, which the pages and ``common.api_errors`` show), and such an error
on a form's fields."""

from contextlib import contextmanager

from django import forms
from django.core.exceptions import ValidationError

from pipelines.errors import InvalidInputError


def form_errors_from(form: forms.Form, error: ValidationError, aliases: dict[str, str]) -> None:
    """Put a service's ``ValidationError`` on the form's fields (renamed through ``aliases``,
    ``model.hair`` → ``hair``); keys the form has no field for become form-wide errors."""
    by_field = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for key, messages in by_field.items():
        name = aliases.get(key, key.removeprefix("model.") if key else key)
        for message in messages:
            text = message[:1].upper() + message[1:]
            form.add_error(name if name in form.fields else None, text)


@contextmanager
def refusals_as_errors(field: str | None = None, *, prefix: str = ""):
    """A pipeline's refusal (``InvalidInputError``) as a form/API error: on ``field`` when
    given, else on the field the refusal names, after ``prefix``. The one place the
    services map the pipelines' errors to the web's error shape."""
    try:
        yield
    except InvalidInputError as error:
        raise ValidationError({field or f"{prefix}{error.argument}": [error.message]}) from None
