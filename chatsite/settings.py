"""One settings file for every environment: values come from environment variables.

The embedded defaults (SQLite, in-memory channel layer, the offline Claude) run a working
chat on a fresh machine; production sets DJANGO_DEBUG=0 plus the variables listed in README.md.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off: "
            "set it to a long random string (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
        )
    SECRET_KEY = "django-insecure-local-development-only-key-do-not-use-in-production"
elif not DEBUG and (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    # Django's own rule (check security.W009), enforced at start instead of only warned about.
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is too weak to be safe: use at least {SECRET_KEY_MIN_LENGTH} characters with "
        f"at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones, not starting with "
        f"{SECRET_KEY_INSECURE_PREFIX!r} (for example the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    "django_htmx",
    "conversations",
    "billing",
    "accounts",
    "teams",
    "audit",
    "privacy",
    "sso",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "chatsite.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Names the request's user as the actor of the audit entries it writes.
    "audit.middleware.AuditActorMiddleware",
    # Last, as django-axes asks: turns a refused login into the page saying when to try again.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversations.context_processors.claude_backend",
                "accounts.context_processors.signup",
                "sso.context_processors.sso",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
# SQLite connections are cheap to keep and costly to reopen for every checkpoint; on PostgreSQL,
# each server thread would hold a connection, so keep that opt-in.
_default_conn_age = "600" if DATABASE_URL.startswith("sqlite") else "0"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", _default_conn_age))
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the server's generation tasks and page views write concurrently.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file (threads share it; in-memory shared cache would lock whole tables), one per
    # process so that test runs never trample each other.
    DATABASES["default"]["TEST"] = {"NAME": f"/tmp/chat-test-{os.getpid()}.sqlite3"}

REDIS_URL = os.environ.get("REDIS_URL", "")
# Connections to Redis per worker and Redis host: when all are busy, a frame waits for one (up to 10 s).
CHAT_REDIS_MAX_CONNECTIONS = int(os.environ.get("CHAT_REDIS_MAX_CONNECTIONS") or "200")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatsite.channel_layers.RedisChannelLayer",
            # channels-redis blocks up to 5 s waiting for a message; redis-py 8's default socket
            # timeout is also 5 s, which would turn every quiet wait into a TimeoutError.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "chatsite.channel_layers.InProcessChannelLayer", "CONFIG": {"capacity": 1500}}
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Attachments (images, PDFs) are private: a directory outside every served URL by default, read back
# only through the owner-checked attachment view. Another backend (e.g. an S3 bucket through
# django-storages) by CHAT_ATTACHMENT_STORAGE_BACKEND and its OPTIONS as JSON.
CHAT_MEDIA_ROOT = Path(os.environ.get("CHAT_MEDIA_ROOT") or BASE_DIR / "media-private")
CHAT_ATTACHMENT_STORAGE = "attachments"
_attachment_backend = os.environ.get(
    "CHAT_ATTACHMENT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
)
try:
    _attachment_options = json.loads(os.environ.get("CHAT_ATTACHMENT_STORAGE_OPTIONS") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"CHAT_ATTACHMENT_STORAGE_OPTIONS must be a JSON object: {exc}") from None
if _attachment_backend == "django.core.files.storage.FileSystemStorage":
    # base_url None: the files have no public URL at all.
    _attachment_options = {"location": CHAT_MEDIA_ROOT, "base_url": None, **_attachment_options}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    CHAT_ATTACHMENT_STORAGE: {"BACKEND": _attachment_backend, "OPTIONS": _attachment_options},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Security settings that matter once DEBUG is off (behind a TLS-terminating proxy).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Scripts and styles only from the site's own files, or inline with the response's nonce (the admin's
# few inline styles carry it); no eval, no plugins, no framing, forms post only to the site. 'self'
# also covers the site's own websocket (ws: and wss: on the same host and port).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Browser features no page of the site uses, denied to it and to anything it might embed
# (chatsite.middleware.PermissionsPolicyMiddleware; a feature maps to the origins allowed it).
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer", "autoplay", "camera", "display-capture", "geolocation", "gyroscope", "hid",
        "idle-detection", "magnetometer", "microphone", "midi", "payment", "publickey-credentials-get",
        "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
    )
}  # fmt: skip

# --- Logins ---------------------------------------------------------------------------------------
# django-axes refuses a login for a username, and from a client address, that failed
# CHAT_LOGIN_FAILURE_LIMIT times; it is allowed again CHAT_LOGIN_COOLOFF_MINUTES after the last attempt
# (an attempt while refused counts as one more failure). The login pages say when (chatsite/logins.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("CHAT_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("CHAT_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "accounts.clients.client_address"
AXES_LOCKOUT_CALLABLE = "chatsite.logins.lockout_response"
# How many reverse proxies in front of the app append the client's address to X-Forwarded-For: the
# client address is then the one the outermost of them saw. 0: the address of the TCP peer.
CHAT_TRUSTED_PROXY_COUNT = int(os.environ.get("CHAT_TRUSTED_PROXY_COUNT", "0"))
# Password checks are slow on purpose (PBKDF2); at most this many run at once, in a pool of their own,
# so that a burst of login attempts cannot take every core from the rest of the site.
CHAT_LOGIN_CONCURRENCY = int(os.environ.get("CHAT_LOGIN_CONCURRENCY", "0")) or max(
    1, (os.cpu_count() or 2) // 2
)

# --- Single sign-on (OpenID Connect) -------------------------------------------------------------
# On when an issuer and a client id are set (sso/: mozilla-django-oidc does the code flow; the endpoints
# come from the issuer's discovery document). The login page then offers "Sign in with CHAT_SSO_NAME";
# CHAT_PASSWORD_LOGIN=off leaves only that. CHAT_SSO_ALLOWED_DOMAINS: e-mail domains that may log in
# this way (empty: any the provider vouches for). The groups claim places people in teams (admin:
# "Group → team mappings").
CHAT_SSO_ISSUER = os.environ.get("CHAT_SSO_ISSUER", "").strip().rstrip("/")
CHAT_SSO_CLIENT_ID = os.environ.get("CHAT_SSO_CLIENT_ID", "").strip()
CHAT_SSO_CLIENT_SECRET = os.environ.get("CHAT_SSO_CLIENT_SECRET", "")
CHAT_SSO_NAME = os.environ.get("CHAT_SSO_NAME", "").strip() or "single sign-on"
CHAT_SSO_ALLOWED_DOMAINS = [domain.lower().lstrip("@") for domain in env_list("CHAT_SSO_ALLOWED_DOMAINS")]
CHAT_SSO_GROUPS_CLAIM = os.environ.get("CHAT_SSO_GROUPS_CLAIM", "").strip() or "groups"
CHAT_SSO_ENABLED = bool(CHAT_SSO_ISSUER and CHAT_SSO_CLIENT_ID)
CHAT_PASSWORD_LOGIN = env_bool("CHAT_PASSWORD_LOGIN", True)
if not CHAT_PASSWORD_LOGIN and not CHAT_SSO_ENABLED:
    raise ImproperlyConfigured(
        "CHAT_PASSWORD_LOGIN=off needs single sign-on: set CHAT_SSO_ISSUER and CHAT_SSO_CLIENT_ID too."
    )
if CHAT_SSO_ENABLED:
    AUTHENTICATION_BACKENDS.append("sso.backends.SsoBackend")
# mozilla-django-oidc's settings, from the above. The provider's endpoints are read from its discovery
# document when a login starts (sso/discovery.py), so they stay empty here.
OIDC_RP_CLIENT_ID = CHAT_SSO_CLIENT_ID
OIDC_RP_CLIENT_SECRET = CHAT_SSO_CLIENT_SECRET
OIDC_RP_SIGN_ALGO = os.environ.get("CHAT_SSO_SIGN_ALGO", "").strip() or "RS256"
OIDC_RP_SCOPES = os.environ.get("CHAT_SSO_SCOPES", "").strip() or "openid email profile"
OIDC_OP_AUTHORIZATION_ENDPOINT = OIDC_OP_TOKEN_ENDPOINT = OIDC_OP_USER_ENDPOINT = OIDC_OP_JWKS_ENDPOINT = ""
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_AUTHENTICATION_CALLBACK_URL = "sso_callback"

# --- Claude ---------------------------------------------------------------------------------------
# With no key, the app starts the offline Claude (offline_claude) in-process.
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
# Reconciling the ledger with Anthropic's Usage & Cost API (billing/reconcile.py) needs an Admin key
# (sk-ant-admin…) and the Console id of the key above (apikey_…), to read that key's usage only; with
# the offline Claude the id may stay empty (it names keys after the fingerprint the ledger keeps).
ANTHROPIC_ADMIN_KEY = os.environ.get("ANTHROPIC_ADMIN_KEY", "")
ANTHROPIC_API_KEY_ID = os.environ.get("ANTHROPIC_API_KEY_ID", "")
CHAT_MODELS = env_list("CHAT_MODELS", "claude-sonnet-5-5,claude-opus-5-5,claude-haiku-5-5")
CHAT_DEFAULT_MODEL = os.environ.get(
    "CHAT_DEFAULT_MODEL", CHAT_MODELS[0] if CHAT_MODELS else "claude-sonnet-5-5"
)
if CHAT_DEFAULT_MODEL not in CHAT_MODELS:
    raise ImproperlyConfigured(
        f"CHAT_DEFAULT_MODEL={CHAT_DEFAULT_MODEL!r} is not one of CHAT_MODELS={CHAT_MODELS}"
    )
# max_tokens of a reply; unset (0): per model, from conversations/catalog.py (room for thinking).
# The small, cheap model that titles a conversation after its first exchange (one more ledgered call,
# counted toward the user's budget); "off": titles stay the first line of the first message.
CHAT_TITLE_MODEL = os.environ.get("CHAT_TITLE_MODEL", "claude-haiku-5-5").strip()
if CHAT_TITLE_MODEL.lower() in ("", "off"):
    CHAT_TITLE_MODEL = ""
CHAT_MAX_TOKENS = int(os.environ.get("CHAT_MAX_TOKENS") or "0")
# Prompt caching of every reply request (one rolling breakpoint): "1h", "5m" or "off". 1h by
# measurement (bench/prompt_caching.py): 5m is cheaper only while every turn comes within 5 minutes,
# and costs more than no caching once people pause longer; 1h stays near 22% of the uncached price.
CHAT_PROMPT_CACHE_TTL = os.environ.get("CHAT_PROMPT_CACHE_TTL", "auto").strip().lower()
if CHAT_PROMPT_CACHE_TTL not in ("auto", "5m", "1h", "off"):
    raise ImproperlyConfigured(
        f"CHAT_PROMPT_CACHE_TTL must be auto, 5m, 1h or off, not {CHAT_PROMPT_CACHE_TTL!r}"
    )
# Largest prompt + reply sent per call, in tokens; unset (0): the model's whole context window.
CHAT_CONTEXT_WINDOW = int(os.environ.get("CHAT_CONTEXT_WINDOW") or "0")
CHAT_MAX_MESSAGE_CHARS = int(os.environ.get("CHAT_MAX_MESSAGE_CHARS", "32000"))
# Drafts a person may have priced per minute by the line under the message box (0: no limit).
CHAT_PRICE_LINE_PER_MINUTE = int(os.environ.get("CHAT_PRICE_LINE_PER_MINUTE", "30"))
CHAT_MAX_SYSTEM_PROMPT_CHARS = int(os.environ.get("CHAT_MAX_SYSTEM_PROMPT_CHARS", "16000"))
# Read-only share links to a conversation: off unless the site turns them on.
CHAT_SHARING = env_bool("CHAT_SHARING", False)
# Web search and web fetch (Anthropic's server tools; each search is billed): what the site's web
# settings start from when the row is first made (conversations.WebSettings, then edited in the admin):
# whether people may turn the Web on in their conversations, the most searches and fetches of one
# reply, and the host names results may only come from, or may never come from (one list or neither).
CHAT_WEB = env_bool("CHAT_WEB", True)
CHAT_WEB_MAX_SEARCHES = int(os.environ.get("CHAT_WEB_MAX_SEARCHES") or "5")
CHAT_WEB_MAX_FETCHES = int(os.environ.get("CHAT_WEB_MAX_FETCHES") or "5")
# What a reply's budget hold allows for the tokens results add to the call (Anthropic bills them as
# input): a fetch reads at most CHAT_WEB_FETCH_MAX_TOKENS (sent as its `max_content_tokens`); a search's
# results have no documented bound, so each is held at CHAT_WEB_SEARCH_RESULT_TOKENS.
CHAT_WEB_FETCH_MAX_TOKENS = int(os.environ.get("CHAT_WEB_FETCH_MAX_TOKENS") or "20000")
CHAT_WEB_SEARCH_RESULT_TOKENS = int(os.environ.get("CHAT_WEB_SEARCH_RESULT_TOKENS") or "10000")
CHAT_WEB_ALLOWED_DOMAINS = [d.lower() for d in env_list("CHAT_WEB_ALLOWED_DOMAINS")]
CHAT_WEB_BLOCKED_DOMAINS = [d.lower() for d in env_list("CHAT_WEB_BLOCKED_DOMAINS")]
if CHAT_WEB_FETCH_MAX_TOKENS < 1 or CHAT_WEB_SEARCH_RESULT_TOKENS < 0:
    raise ImproperlyConfigured(
        "CHAT_WEB_FETCH_MAX_TOKENS must be at least 1, CHAT_WEB_SEARCH_RESULT_TOKENS at least 0."
    )
if CHAT_WEB_MAX_SEARCHES < 1 or CHAT_WEB_MAX_FETCHES < 1:
    raise ImproperlyConfigured("CHAT_WEB_MAX_SEARCHES and CHAT_WEB_MAX_FETCHES must be at least 1.")
if CHAT_WEB_ALLOWED_DOMAINS and CHAT_WEB_BLOCKED_DOMAINS:
    raise ImproperlyConfigured(
        "Set CHAT_WEB_ALLOWED_DOMAINS or CHAT_WEB_BLOCKED_DOMAINS, not both (the API refuses both)."
    )
# Conversations the sidebar loads at a time (more load as it scrolls, or with its "More" link).
CHAT_SIDEBAR_PAGE = max(1, int(os.environ.get("CHAT_SIDEBAR_PAGE", "50")))
# Largest conversation file a person may import.
CHAT_IMPORT_MAX_BYTES = int(os.environ.get("CHAT_IMPORT_MAX_BYTES", str(20 * 1024 * 1024)))
# Attachments per message and their sizes (the API's own limits are the ceiling: 5 MB and 8,000 px per
# image, 100 PDF pages per request). Images are scaled down to CHAT_IMAGE_MAX_EDGE on the long edge
# (and about 1.15 megapixels), the size the model uses, before they are stored.
CHAT_MAX_ATTACHMENTS = int(os.environ.get("CHAT_MAX_ATTACHMENTS", "10"))
# Files a person may have uploaded but not sent yet, in all their conversations (unsent ones go after a day).
CHAT_MAX_PENDING_FILES = int(os.environ.get("CHAT_MAX_PENDING_FILES") or "30")
CHAT_MAX_PENDING_MB = int(os.environ.get("CHAT_MAX_PENDING_MB") or "100")
CHAT_MAX_IMAGE_BYTES = int(os.environ.get("CHAT_MAX_IMAGE_MB", "5")) * 1024 * 1024
CHAT_MAX_PDF_BYTES = int(os.environ.get("CHAT_MAX_PDF_MB", "20")) * 1024 * 1024
CHAT_MAX_PDF_PAGES = int(os.environ.get("CHAT_MAX_PDF_PAGES", "100"))
# Text files (plain text, Markdown, CSV, JSON, source code): largest upload, and most tokens one may hold
# (estimated at four UTF-8 bytes a token; the budget hold counts every byte as a token, an upper bound).
CHAT_MAX_TEXT_BYTES = int(os.environ.get("CHAT_MAX_TEXT_KB") or "256") * 1024
CHAT_MAX_TEXT_TOKENS = int(os.environ.get("CHAT_MAX_TEXT_TOKENS") or "50000")
CHAT_IMAGE_MAX_EDGE = int(os.environ.get("CHAT_IMAGE_MAX_EDGE", "1568"))
# Largest image (in pixels) an upload may decode to: checked from its header before decoding, so a
# small file that expands to a huge image cannot take a worker's memory.
CHAT_MAX_IMAGE_MEGAPIXELS = int(os.environ.get("CHAT_MAX_IMAGE_MEGAPIXELS") or "36")
# Deltas are coalesced into one websocket frame per this many milliseconds.
CHAT_COALESCE_MS = int(os.environ.get("CHAT_COALESCE_MS", "40"))
# ...and up to this many while the process is behind (many streams on one worker): fewer, fuller frames
# cost less to send, so it catches up (see FramePace in conversations/replies/generation.py). Equal: fixed.
CHAT_COALESCE_MAX_MS = int(os.environ.get("CHAT_COALESCE_MAX_MS", "100"))
# Partial reply text is saved to the database at most this often.
CHAT_CHECKPOINT_SECONDS = float(os.environ.get("CHAT_CHECKPOINT_SECONDS", "1.0"))
# The SDK's HTTP transport: "aiohttp" (its DefaultAioHttpClient, the anthropic[aiohttp] extra: about a
# third less CPU per streamed delta, see bench/relay_latency.py) or "httpx" (its default httpx2 client).
CHAT_HTTP_CLIENT = os.environ.get("CHAT_HTTP_CLIENT", "aiohttp").strip().lower()
if CHAT_HTTP_CLIENT not in ("aiohttp", "httpx"):
    raise ImproperlyConfigured(f"CHAT_HTTP_CLIENT must be aiohttp or httpx, not {CHAT_HTTP_CLIENT!r}")
# Read timeout for a stalled stream, in seconds (the SDK's default is 600).
CHAT_READ_TIMEOUT_SECONDS = float(os.environ.get("CHAT_READ_TIMEOUT_SECONDS", "60"))
CHAT_MAX_RETRIES = int(os.environ.get("CHAT_MAX_RETRIES", "2"))
# A reply waits at most this long in all for its retries (however long retry-after asks), then fails with Retry.
CHAT_RETRY_MAX_WAIT_SECONDS = float(os.environ.get("CHAT_RETRY_MAX_WAIT_SECONDS", "30"))
# A streaming reply is leased to the worker writing it, which renews the lease every second from a
# thread of its own (leases.heartbeat); any worker ends a reply whose lease has not been renewed for
# this long (its worker died).
CHAT_LEASE_SECONDS = float(os.environ.get("CHAT_LEASE_SECONDS", "10"))
# A Send still waiting for the database after this long tells its page it is kept and will be sent.
CHAT_BUSY_NOTICE_SECONDS = float(os.environ.get("CHAT_BUSY_NOTICE_SECONDS", "2"))
# How long a worker keeps trying to save a reply's end while the database cannot take it.
CHAT_END_SAVE_SECONDS = float(os.environ.get("CHAT_END_SAVE_SECONDS", "60"))
# On SIGTERM/SIGINT a worker takes no new replies and lets running ones finish for this long, then ends
# the rest as interrupted (text saved, ledger rows written) before it exits.
CHAT_SHUTDOWN_GRACE_SECONDS = float(os.environ.get("CHAT_SHUTDOWN_GRACE_SECONDS", "10"))

# --- Billing --------------------------------------------------------------------------------------
# Monthly budget per user in USD unless an admin sets one ("" or "unlimited" = no limit); parsed by
# billing.services.parse_budget_usd. A rate limit of 0 disables it.
CHAT_DEFAULT_MONTHLY_BUDGET_USD = os.environ.get("CHAT_DEFAULT_MONTHLY_BUDGET_USD", "20")
CHAT_RATE_LIMIT_PER_MINUTE = int(os.environ.get("CHAT_RATE_LIMIT_PER_MINUTE", "20") or 0)
CHAT_BUDGET_WARNING_PERCENT = int(os.environ.get("CHAT_BUDGET_WARNING_PERCENT", "80"))
# Budget alerts are mailed from a thread of their own (a slow SMTP server never holds a reply); on: by
# the thread that noticed them (tests that read the outbox inside their own transaction).
CHAT_BUDGET_ALERTS_INLINE = env_bool("CHAT_BUDGET_ALERTS_INLINE", False)

# --- Accounts and sockets -------------------------------------------------------------------------
# Who may create an account: open (anyone who can reach the server), invite (a link staff create in
# the admin), domains (an address at one of CHAT_SIGNUP_DOMAINS, confirmed by a mailed link) or closed
# (staff create accounts). Unset: open while DJANGO_DEBUG is on (one person trying the app), else closed.
CHAT_SIGNUP = os.environ.get("CHAT_SIGNUP", "").strip().lower() or ("open" if DEBUG else "closed")
if CHAT_SIGNUP not in {"open", "invite", "domains", "closed"}:
    raise ImproperlyConfigured(f"CHAT_SIGNUP={CHAT_SIGNUP!r}: use open, invite, domains or closed.")
CHAT_SIGNUP_DOMAINS = [domain.lower().lstrip("@") for domain in env_list("CHAT_SIGNUP_DOMAINS")]
if CHAT_SIGNUP == "domains" and not CHAT_SIGNUP_DOMAINS:
    raise ImproperlyConfigured("CHAT_SIGNUP=domains needs CHAT_SIGNUP_DOMAINS, e.g. example.org,example.com.")
# Mail (the confirmation links of CHAT_SIGNUP=domains) goes to an SMTP server; while DJANGO_DEBUG is on
# and DJANGO_EMAIL_HOST is unset, it is printed to the server log instead.
_email_host = os.environ.get("DJANGO_EMAIL_HOST", "")
if _email_host or not DEBUG:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _email_host or "localhost",
                "port": int(os.environ.get("DJANGO_EMAIL_PORT", "0")) or None,  # None: 25, or 587 with TLS
                "username": os.environ.get("DJANGO_EMAIL_USER", ""),
                "password": os.environ.get("DJANGO_EMAIL_PASSWORD", ""),
                "use_tls": env_bool("DJANGO_EMAIL_USE_TLS", False),
                "timeout": 20,
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "webmaster@localhost")
# Per user and per worker process (0 = no limit): open chat sockets, and frames a user's sockets may
# send per second (a token bucket holding CHAT_FRAME_BURST frames). Frames beyond it are refused before
# any database work.
CHAT_MAX_SOCKETS_PER_USER = int(os.environ.get("CHAT_MAX_SOCKETS_PER_USER", "20"))
CHAT_MAX_FRAMES_PER_SECOND = float(os.environ.get("CHAT_MAX_FRAMES_PER_SECOND", "10"))
CHAT_FRAME_BURST = int(os.environ.get("CHAT_FRAME_BURST", "20"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # The app's loggers print through their own handler only: daphne's command line also gives the
    # root logger a handler, and propagating to it would print every line twice.
    "loggers": {
        name: {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO"), "propagate": False}
        for name in ("conversations", "billing", "accounts", "offline_claude", "sso")
    },
}
