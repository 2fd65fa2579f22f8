"""What people type, cleaned at the edge: ids, message text, model names, system prompts and stop
sequences, and the guard that refuses a change while a reply is being written. Each function returns a
typed value or raises InvalidInput (NotFound for someone else's or a missing id) with a sentence to show;
nothing is written."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from teams import access

from .catalog import EFFORTS
from .models import (
    Conversation,
    Message,
)

# Primary keys are 64-bit: anything larger can name no row (and would overflow the database's integer).
MAX_ID = 2**63 - 1


class InvalidInput(ValueError):
    """Bad input from a person; str(exc) says what to fix. Nothing was written."""


class StillStreaming(InvalidInput):
    """A reply of the conversation is being written: nothing else may change it until that ends."""


class NotFound(InvalidInput):
    """The thing named does not exist or is not the person's; which of the two is never said."""


def parse_int(value: object, *, least: int = 1, most: int = MAX_ID) -> int | None:
    """An integer from `least` (a positive one by default) up to `most`, from a form, a query string, a
    cursor or a websocket frame (an int, or its ASCII digits), else None. The one place such numbers
    are read."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= len(str(most)):
        value = int(value)
    if type(value) is not int or not least <= value <= most:
        return None
    return value


def clean_id(value: object) -> int:
    """A row id from a form or a websocket frame: a positive integer (or its digits), else NotFound."""
    parsed = parse_int(value)
    if parsed is None:
        raise NotFound("No such message.")
    return parsed


def refuse_unstorable(text: str, what: str) -> str:
    """`text`, unless it holds characters no database stores as text: NUL (PostgreSQL refuses it) or a
    lone surrogate (not valid UTF-8). InvalidInput names `what` then."""
    if "\x00" in text:
        raise InvalidInput(
            f"{what} contains a NUL character, which cannot be stored: remove it and try again."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800" in a websocket frame's JSON)
        raise InvalidInput(f"{what} contains characters that are not valid text.") from None
    return text


def clean_message_text(text: object, *, allow_empty: bool = False) -> str:
    """The message as stored; `allow_empty` when files go with it (an image may be the whole question)."""
    if text is None and allow_empty:
        text = ""
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    # The search's highlight markers (private-use characters) never come from a person's text.
    text = text.replace("\r\n", "\n").replace("\ue000", "").replace("\ue001", "").strip()
    if not text and not allow_empty:
        raise InvalidInput("The message is empty.")
    refuse_unstorable(text, "The message")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long ({len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,})."
        )
    return text


def clean_model(model: object) -> str:
    """One of the models the site offers (whoever asks: a team's narrower choice is `ModelChoice`'s)."""
    if model not in settings.CHAT_MODELS:
        raise InvalidInput("Choose one of the offered models.")
    return model


def clean_optional_model(model: object) -> str | None:
    """A model chosen in a form that may leave it out (None, or "": keep the conversation's)."""
    return None if model in (None, "") else clean_model(model)


@dataclass(frozen=True)
class ModelChoice:
    """The models one person may use and the one their new conversations start on: their team's, else
    the site's (`teams.access`). Read once per request or Send (`model_choice`): staff may change a
    team's list at any time, so it is never kept longer."""

    offered: tuple[str, ...]
    default: str
    #: Whether their team chose its own list (else every model the site offers, and its side calls').
    restricted: bool = False
    #: Their team's row as read (None: no team), so the budget hold of the same Send need not read it again.
    team: object = None

    def clean(self, model: object) -> str:
        """`model`, when the person may choose it; else InvalidInput naming what they may choose."""
        if model in self.offered:
            return model
        if self.restricted and model in settings.CHAT_MODELS:
            raise InvalidInput(f"Your team may not use {model}; choose one of {', '.join(self.offered)}.")
        raise InvalidInput("Choose one of the offered models.")

    def clean_optional(self, model: object) -> str | None:
        """A model chosen in a form that may leave it out (None, or "": keep the conversation's)."""
        return None if model in (None, "") else self.clean(model)

    def allowed_or_default(self, model: str) -> str:
        """`model` while the person may use it, else their default: what a reply (or an import) on a
        model their team no longer allows goes on with, unasked."""
        return model if model in self.offered else self.default

    def allows_side_model(self, model: str) -> bool:
        """Whether a call the site makes on its own choice of model (a title) may run on `model` for this
        person: any model unless their team chose a list, then only one in it."""
        return not self.restricted or model in self.offered


_UNREAD = object()


def model_choice(user_id: int | None, *, team=_UNREAD) -> ModelChoice:
    """What `user_id` (a conversation's owner; None: nobody signed in) may choose: one query for their
    membership and team, unless the caller read their `team` (a Team, or None: no team) already."""
    if team is _UNREAD:
        team = access.team_of(user_id) if user_id is not None else None
    return ModelChoice(
        offered=tuple(access.allowed_models(team)),
        default=access.default_model(team),
        restricted=bool(team and team.allowed_models),
        team=team,
    )


def clean_version(value: object) -> int:
    """Which version of a turn to show, counted from 1."""
    index = parse_int(value, least=0, most=10_000)  # 0 is a number: "there is no version 0" then
    if index is None:
        raise InvalidInput("Choose a version by its number.")
    return index


def clean_title(value: object) -> str:
    """A title given by hand."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("The title cannot be empty.")
    return refuse_unstorable(value, "The title").strip()[:200]


def clean_effort(value: object) -> str | None:
    """A thinking effort from the settings form: one of EFFORTS, "" for the model's default, None when
    the form has no such field."""
    if value is not None and value not in ("", *EFFORTS):
        raise InvalidInput("Choose one of the offered effort levels.")
    return value


def clean_preset_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("Give the preset a name.")
    refuse_unstorable(value, "The preset's name")
    if len(value.strip()) > 100:
        raise InvalidInput("The preset's name must be at most 100 characters.")
    return value.strip()


def clean_preset_prompt(value: object) -> str:
    prompt = clean_system_prompt(value)
    if not prompt:
        raise InvalidInput("The preset's system prompt is empty.")
    return prompt


def clean_system_prompt(system_prompt: object) -> str:
    if not isinstance(system_prompt, str) or len(system_prompt) > settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(
            f"The system prompt must be at most {settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:,} characters."
        )
    return refuse_unstorable(system_prompt.replace("\r\n", "\n").strip(), "The system prompt")


# Stop sequences per conversation. The API takes a list of strings, each with some non-whitespace
# (it answers 400 otherwise); the count and length caps are this app's, to keep requests small.
MAX_STOP_SEQUENCES = 8


MAX_STOP_SEQUENCE_CHARS = 200


def clean_stop_sequences(value: object) -> list[str]:
    """Stop sequences from the settings form: one per line (a written "\\n" stands for a line break),
    blank lines skipped, duplicates dropped. Raises InvalidInput naming what is wrong."""
    if value is None:
        return []
    if not isinstance(value, str):
        raise InvalidInput("Stop sequences must be text, one per line.")
    refuse_unstorable(value, "The stop sequences")
    sequences: list[str] = []
    for line in value.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        sequence = line.replace("\\n", "\n")
        if not sequence.strip():
            raise InvalidInput("A stop sequence must contain something other than spaces and line breaks.")
        if len(sequence) > MAX_STOP_SEQUENCE_CHARS:
            raise InvalidInput(f"A stop sequence can be at most {MAX_STOP_SEQUENCE_CHARS} characters.")
        if sequence not in sequences:
            sequences.append(sequence)
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise InvalidInput(f"At most {MAX_STOP_SEQUENCES} stop sequences ({len(sequences)} given).")
    return sequences


def clean_settings(form, models: ModelChoice) -> dict:
    """The conversation settings form (a QueryDict or a dict), cleaned into the keyword arguments of
    `services.conversation_update_settings`, the model among the owner's `models`; InvalidInput names
    the first field that is wrong. Fields the form leaves out (effort, stop sequences) are None:
    unchanged."""
    stop_sequences = form.get("stop_sequences")
    return {
        "system_prompt": clean_system_prompt(form.get("system_prompt", "")),
        "effort": clean_effort(form.get("effort")),
        "model": models.clean(form.get("model")),
        "stop_sequences": None if stop_sequences is None else clean_stop_sequences(stop_sequences),
    }


def stop_sequences_text(sequences: list[str]) -> str:
    """The settings form's text for `sequences` (the inverse of `clean_stop_sequences`)."""
    return "\n".join(s.replace("\n", "\\n") for s in sequences)


def refuse_while_streaming(conversation: Conversation, what: str, *, streaming: bool | None = None) -> None:
    """Raise StillStreaming when a reply of `conversation` is being written (`streaming`: what the caller
    read already, else one query)."""
    if streaming is None:
        streaming = conversation.messages.filter(status=Message.Status.STREAMING).exists()
    if streaming:
        raise StillStreaming(f"Wait for the current reply to finish, or stop it, before {what}.")
