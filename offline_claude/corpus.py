"""The offline web: a few dozen fixed pages that the offline Claude's web search and web fetch read.

Every page is plain data written for this project (no copied web content), under the reserved
``.example`` top-level domain so that no URL here can ever reach a real site. Two pages carry markup
and script in their title or text (``<script>alert(1)</script>``, an ``onerror`` image): the app must
show them as inert text, and its XSS tests search for them (query "xss").

Search is a plain word match: a page scores one point per distinct query word found in its title or
text (words of three letters or more, stopwords ignored); ties keep corpus order; at most
``MAX_RESULTS`` pages come back. The same query always gives the same pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_RESULTS = 5


@dataclass(frozen=True)
class Page:
    """One page of the offline web."""

    url: str
    title: str
    text: str
    page_age: str | None = None

    @property
    def domain(self) -> str:
        """The page's host name, lower case."""
        return (urlsplit(self.url).hostname or "").lower()


def _p(url: str, title: str, text: str, page_age: str | None = "March 2, 2026") -> Page:
    return Page(url=url, title=title, text=" ".join(text.split()), page_age=page_age)


PAGES: tuple[Page, ...] = (
    _p(
        "https://teahouse.example/guides/green-tea-brewing",
        "Brewing green tea without bitterness",
        """Green tea turns bitter when the water is too hot. Water between 70 and 80 degrees Celsius and a
        steep of two minutes keep it sweet. Leaves can be steeped again two or three times.""",
    ),
    _p(
        "https://teahouse.example/guides/black-tea-history",
        "A short history of black tea",
        """Black tea is fully oxidised before it is dried, which lets it keep for months on long voyages.
        That is why it travelled further than green tea in the age of sailing ships.""",
        "January 14, 2025",
    ),
    _p(
        "https://cycling-notes.example/maintenance/chain-care",
        "Bicycle chain care in five minutes",
        """Clean the chain with a dry rag, then add one drop of oil per roller and wipe the excess. A chain
        that is over-oiled collects grit and wears the cassette faster.""",
    ),
    _p(
        "https://cycling-notes.example/maintenance/tyre-pressure",
        "Choosing bicycle tyre pressure",
        """Wider tyres run at lower pressure. A 28 mm road tyre is comfortable at about 5 bar for a rider of
        75 kg; gravel tyres often run at 2 to 3 bar.""",
        "June 30, 2026",
    ),
    _p(
        "https://sky-watch.example/planets/saturn-rings",
        "Why Saturn's rings are so bright",
        """Saturn's rings are made mostly of water ice, which reflects sunlight well. The particles range
        from dust to boulders the size of a house, and the rings are less than a kilometre thick.""",
    ),
    _p(
        "https://sky-watch.example/events/meteor-showers",
        "Meteor showers of the year",
        """The Perseids peak in mid August and the Geminids in mid December. A dark site and twenty minutes
        for the eyes to adapt matter more than any telescope.""",
        "November 5, 2026",
    ),
    _p(
        "https://sky-watch.example/basics/moon-phases",
        "The phases of the Moon explained",
        """The Moon does not change shape: we see a changing part of its sunlit half as it orbits the Earth
        every 29.5 days.""",
    ),
    _p(
        "https://bakery-lab.example/sourdough/starter",
        "Keeping a sourdough starter alive",
        """Feed the starter equal weights of flour and water once a day at room temperature, or once a week
        when it lives in the fridge. A layer of grey liquid means it is hungry, not dead.""",
    ),
    _p(
        "https://bakery-lab.example/sourdough/oven-spring",
        "Getting oven spring in sourdough bread",
        """Steam during the first twenty minutes keeps the crust soft so the loaf can rise. A covered pot
        traps the loaf's own steam and works in a home oven.""",
    ),
    _p(
        "https://pydocs.example/asyncio/tasks",
        "Python asyncio tasks and cancellation",
        """An asyncio task runs a coroutine concurrently. Cancelling a task raises CancelledError inside it
        at its next await; code that catches it should clean up and re-raise.""",
    ),
    _p(
        "https://pydocs.example/asyncio/streams",
        "Python asyncio streams for servers",
        """asyncio.start_server hands each connection a reader and a writer. Call drain after write so a slow
        client applies back-pressure instead of filling memory.""",
    ),
    _p(
        "https://webstack.example/django/channels",
        "Django Channels in one page",
        """Channels adds websockets to Django through consumers. A channel layer carries messages between
        processes; groups let one event reach every socket watching the same thing.""",
    ),
    _p(
        "https://webstack.example/http/server-sent-events",
        "Server-sent events, the simple stream",
        """Server-sent events keep one HTTP response open and write lines that start with event and data.
        A blank line ends each event. Browsers reconnect on their own.""",
    ),
    _p(
        "https://webstack.example/http/htmx-swaps",
        "htmx out-of-band swaps",
        """An element sent with hx-swap-oob replaces or extends the element with the same id anywhere on
        the page, so one response can update several places at once.""",
    ),
    _p(
        "https://green-leaf.example/biology/photosynthesis",
        "Photosynthesis for beginners",
        """Plants use light to turn carbon dioxide and water into sugar, releasing oxygen. Chlorophyll
        absorbs red and blue light and reflects green, which is why leaves look green.""",
    ),
    _p(
        "https://green-leaf.example/garden/tomatoes",
        "Growing tomatoes on a balcony",
        """Tomatoes want six hours of sun, a deep pot and regular watering. Pinch out side shoots on
        cordon varieties so the plant puts its energy into fruit.""",
    ),
    _p(
        "https://green-leaf.example/garden/bees",
        "Flowers that feed bees",
        """Bees prefer open flowers such as lavender, borage and clover. Flowers from early spring to late
        autumn give them food through the whole season.""",
    ),
    _p(
        "https://earth-facts.example/geology/volcanoes",
        "How volcanoes erupt",
        """Magma rises because it is lighter than the rock around it. Gas dissolved in the magma expands as
        the pressure drops, and sticky magma traps it until it bursts out explosively.""",
    ),
    _p(
        "https://earth-facts.example/oceans/tides",
        "What causes the tides",
        """The Moon's gravity pulls the ocean into two bulges, one facing the Moon and one opposite. The
        Earth turns under them, so most coasts see two high tides a day.""",
    ),
    _p(
        "https://chess-club.example/openings/italian-game",
        "The Italian Game for new players",
        """After 1.e4 e5 2.Nf3 Nc6 3.Bc4 the bishop aims at the weak f7 square. Develop quickly, castle
        early and fight for the centre.""",
    ),
    _p(
        "https://chess-club.example/endgames/king-and-pawn",
        "King and pawn endgames: the opposition",
        """In a king and pawn ending the side that does not have to move often wins. Taking the opposition
        means placing your king facing the other king with one square between them.""",
    ),
    _p(
        "https://coffee-notes.example/brewing/pour-over",
        "Pour-over coffee ratios",
        """Start with 60 grams of coffee per litre of water, ground like coarse sand, and a total brew time
        near three minutes. Finer grinds extract faster and taste more bitter.""",
    ),
    _p(
        "https://type-shop.example/typography/line-length",
        "Comfortable line length for reading",
        """Lines of 45 to 75 characters are easiest to read. Longer lines make the eye lose its place when
        it jumps back to the start of the next line.""",
    ),
    _p(
        "https://money-basics.example/accounting/exact-arithmetic",
        "Why money is never a float",
        """Binary floating point cannot represent 0.1 exactly, so sums of prices drift. Store amounts as
        integers of a small unit, or as decimals, and round once at the end.""",
    ),
    _p(
        "https://money-basics.example/budgets/hard-caps",
        "Hard budget caps for shared accounts",
        """A hard cap holds the worst case of a purchase before it starts and releases the rest afterwards,
        so two purchases at once can never spend more than the cap.""",
    ),
    _p(
        "https://history-desk.example/inventions/printing-press",
        "The printing press and the spread of books",
        """Movable metal type made books cheaper to produce in fifteenth century Europe. Within fifty years
        millions of printed books were in circulation.""",
        None,
    ),
    _p(
        "https://history-desk.example/inventions/telegraph",
        "The electric telegraph",
        """The telegraph sent coded pulses of current along wires, carrying news across a continent in
        minutes instead of days.""",
        None,
    ),
    _p(
        "https://weather-desk.example/forecast/rainbows",
        "When to look for a rainbow",
        """A rainbow appears opposite the Sun when sunlight meets falling rain. Low Sun in the morning or
        late afternoon gives the highest arcs.""",
    ),
    # Hostile pages: markup and script in titles and text, for the app's XSS tests (query "xss").
    _p(
        "https://hostile.example/xss/title-script",
        "<script>alert(1)</script> XSS test page",
        """This page about xss puts a script element in its title. <script>alert(1)</script> A safe reader
        shows these angle brackets as text.""",
    ),
    _p(
        "https://hostile.example/xss/onerror-image",
        'Image with an onerror handler <img src=x onerror="alert(2)">',
        """Another xss sample: <img src=x onerror="alert(2)"> and a link <a href="javascript:alert(3)">click
        me</a> that must stay inert.""",
    ),
)

_WORD_RE = re.compile(r"[a-z0-9][a-z0-9+#.-]*")
_STOP = frozenset(
    """the and for are but not you your with this that what which when where why how who does did was
    were has have had its from into about can could would should will please tell explain find search
    look show give more some any all out use using over than then them they their there these those
    latest details read fetch page pages web site about also just me""".split()
)


def query_words(text: str) -> list[str]:
    """The distinct searchable words of ``text`` (lower case, three letters or more, no stopwords)."""
    seen: list[str] = []
    for word in _WORD_RE.findall(text.lower()):
        word = word.strip(".-")
        if len(word) >= 3 and word not in _STOP and word not in seen:
            seen.append(word)
    return seen


def domain_matches(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or one of its subdomains (how the API's domain filters match)."""
    host, domain = host.lower(), domain.lower().lstrip(".")
    return host == domain or host.endswith("." + domain)


def allowed(page_url: str, allowed_domains: list[str] | None, blocked_domains: list[str] | None) -> bool:
    """Whether a URL passes a tool's ``allowed_domains`` / ``blocked_domains``."""
    host = (urlsplit(page_url).hostname or "").lower()
    if allowed_domains is not None and not any(domain_matches(host, d) for d in allowed_domains):
        return False
    return not (blocked_domains and any(domain_matches(host, d) for d in blocked_domains))


def search(
    query: str,
    *,
    allowed_domains: list[str] | None = None,
    blocked_domains: list[str] | None = None,
    limit: int = MAX_RESULTS,
) -> list[Page]:
    """The pages matching ``query``, best first (see the module docstring for the rule)."""
    words = query_words(query)
    scored = []
    for order, page in enumerate(PAGES):
        if not allowed(page.url, allowed_domains, blocked_domains):
            continue
        haystack = set(query_words(f"{page.title} {page.text} {page.domain}"))
        score = sum(1 for w in words if w in haystack)
        if score:
            scored.append((-score, order, page))
    scored.sort(key=lambda item: item[:2])
    return [page for _, _, page in scored[:limit]]


def page_at(url: str) -> Page | None:
    """The page at ``url`` (ignoring a trailing slash and a fragment), or None."""
    want = url.split("#", 1)[0].rstrip("/")
    for page in PAGES:
        if page.url == want:
            return page
    return None
