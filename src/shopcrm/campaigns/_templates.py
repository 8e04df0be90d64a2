"""Rendering a variant's content for one channel: jinja2 in a sandbox, strict variables, channel limits.

The renderer is pure: content + context + the policy's decorations in, a
:class:`Rendered` message (or a :class:`~shopcrm.errors.CampaignError` saying
what is wrong) out.  Compiled templates are cached on the renderer instance.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import attrs
import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.runtime
import markupsafe

from shopcrm.campaigns._korean import PARTICLES, cp949_length, format_date, krw, with_particle
from shopcrm.campaigns._limits import LimitedEnvironment, TemplateLimitError, TemplateLimits, metered
from shopcrm.campaigns._models import BRAND_LAYOUT_ITEMS, Content
from shopcrm.errors import CampaignError
from shopcrm.tracking import TrackingPolicy

__all__ = [
    "LIMITS", "SAMPLE_KEY", "SAMPLE_RECOMMENDATIONS", "Decorations", "RecommendedProduct", "Rendered", "Renderer",
    "TemplateLimits", "product_grid", "recommended", "uses_link",
]

#: channel limits (see docs/campaigns/templates.md for the sources)
LIMITS: dict[str, int] = {
    "sms_bytes": 90,
    "lms_bytes": 2000,
    "subject_bytes": 40,
    "alimtalk_chars": 1000,
    "alimtalk_variables": 40,
    "buttons": 5,
    "button_name_chars": 14,
    "brand_message_chars": 1300,
    "push_chars": 1000,
    # Brand Message list (wide item list) and carousel feed (providers.md section 2.3)
    "brand_list_header_chars": 20,
    "brand_list_main_title_chars": 25,
    "brand_list_title_chars": 30,
    "brand_list_buttons": 2,
    "brand_list_button_chars": 8,  # a button of any layout but text and image (section 2.3; Solapi's bmsConstraints)
    "brand_message_line_breaks": 99,
    "brand_card_header_chars": 20,
    "brand_card_text_chars": 180,
}
_MISSING = object()
#: the types of values a rendered text is remembered by (:meth:`Renderer._text_key`); instants only when naive
_PLAIN = frozenset({str, int, bool, type(None)})
_INSTANTS = frozenset({datetime, date})
_SLOT = re.compile(r"#\{([^{}]+)\}")
#: the message key a render runs for when it has none (save-time checks): lengths come out as in a real message
SAMPLE_KEY = "0" * 32
#: asks :meth:`Renderer.render_cached` for the rendering shared by every message (SAMPLE_KEY's tokens in it)
_SHARED = "0" * 32 + "shared"
_HEX_KEY = re.compile(r"[0-9a-f]{32}")


@attrs.frozen(kw_only=True, cache_hash=True)
class Decorations:
    """What an advertising message must carry, per the jurisdiction's rules (the policy fills it)."""

    #: prefix of SMS/LMS/MMS/push bodies and e-mail subjects, e.g. ``(광고)``; empty for none
    ad_prefix: str = "(광고)"
    #: the sender's name and contact, after the prefix (K6)
    sender_line: str = ""
    #: the last line of a text message, e.g. ``무료수신거부 080-123-4567`` (K7) or ``Reply STOP to opt out``
    opt_out_line: str = ""
    #: the e-mail footer (the sender, a postal address, the unsubscribe link); ``{unsubscribe_url}`` is filled in
    email_footer: str = "수신을 원하지 않으시면 여기에서 수신거부하세요: {unsubscribe_url}"
    #: whether an advertising push carries the sender line and ends with the opt-out line, as a text message does
    #: (Korea: K6, K7); else only the prefix
    push_lines: bool = False
    #: the one-click unsubscribe URL template for e-mail (``{customer_id}`` is filled in)
    unsubscribe_url: str = ""
    #: where ``{{ link(url) }}`` points and the secret its tokens are signed with (None: ``link`` is refused);
    #: with an ``unsubscribe_url`` of its own, e-mails get a signed one-click unsubscribe link per message
    tracking: TrackingPolicy | None = None


@attrs.frozen(kw_only=True)
class Rendered:
    """A message ready for a channel: ``kind`` is the concrete product (sms, lms, mms, alimtalk, ...)."""

    channel: str
    kind: str
    text: str
    subject: str | None = None
    html: str | None = None
    template_code: str | None = None
    variables: tuple[tuple[str, str], ...] = ()
    buttons: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    image_url: str | None = None
    #: the targets of the message's tracked links (``{{ link(url) }}``), in order of first use: a click token
    #: names one of them by :func:`shopcrm.tracking.link_id`
    links: tuple[str, ...] = ()
    #: a Brand Message's layout when it is not plain text: ``list`` (wide item list) or ``carousel`` (carousel feed)
    layout: str | None = None
    #: the header of a Brand Message list
    header: str | None = None
    #: the products of a Brand Message list or carousel: (title, description, image URL, tracked link, the card's
    #: button label: carousel only, "" in a list)
    items: tuple[tuple[str, str, str, str, str], ...] = ()


class _Links:
    """The tracked links of one message being rendered: its key, the tracking policy, the targets seen, and the
    product lines (``sms_line``) waiting to be filled in once the rest of the message is known."""

    __slots__ = ("key", "lines", "tracking", "urls")

    def __init__(self, key: str, tracking: TrackingPolicy | None) -> None:
        self.key, self.tracking = key, tracking
        self.urls: dict[str, None] = {}
        self.lines: list[tuple[tuple[RecommendedProduct, ...], int | None, str]] = []


_LINKS: ContextVar[_Links | None] = ContextVar("shopcrm_template_links", default=None)


def _link(url: object) -> str:
    """``{{ link("https://...") }}``: the URL as a tracked link of the message being rendered."""
    links = _LINKS.get()
    if links is None:
        raise ValueError("link() works only in a campaign message's templates")
    if links.tracking is None:
        raise ValueError("link() needs a tracking base: set MessagingPolicy.tracking = "
                         "TrackingPolicy(base_url='https://shop.example/r', secret=...)")
    if not isinstance(url, str) or not re.fullmatch(r"https?://\S+", url):
        raise ValueError(f"link() takes an http(s) URL without spaces; got {url!r}")
    links.urls[url] = None
    return links.tracking.link(links.key, url)


# ------------------------------------------------------------------ recommended products in messages
_PRODUCT_FIELDS = ("product_id", "name", "price", "category", "image_url", "url")


class RecommendedProduct(Mapping[str, Any]):
    """One recommended product as a template sees it: ``name``, ``price``, ``url`` (the product page as a tracked
    link of the message being rendered, or the plain product URL when the policy has no tracking base),
    ``image_url``, ``product_id`` and ``category``.  Hashable, so customers with the same recommendations share
    one rendering (each with its own link tokens)."""

    __slots__ = ("_hash", "_values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = {k: values.get(k) for k in ("product_id", "name", "price", "category", "image_url",
                                                   "product_url", "strategy")}
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        if key == "url":
            return _product_link(self._values["product_url"])
        if key in self._values:
            return self._values[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_PRODUCT_FIELDS)

    def __len__(self) -> int:
        return len(_PRODUCT_FIELDS)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._values.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecommendedProduct) and self._values == other._values

    def __repr__(self) -> str:
        return f"RecommendedProduct({self._values!r})"


def recommended(items: Sequence[Mapping[str, Any]]) -> tuple[RecommendedProduct, ...]:
    """What templates get as ``recommendations`` from the recommender's dicts (product_id, name, price, category,
    image_url, product_url, strategy)."""
    return tuple(item if isinstance(item, RecommendedProduct) else RecommendedProduct(item) for item in items)


#: products a campaign's templates are checked with when it is saved (real ones come at tick time)
SAMPLE_RECOMMENDATIONS: tuple[RecommendedProduct, ...] = recommended([
    {"product_id": f"SAMPLE{i}", "name": name, "price": price, "category": "sample",
     "image_url": f"https://shop.example.com/images/sample-{i}.jpg", "product_url": f"https://shop.example.com/products/sample-{i}"}
    for i, (name, price) in enumerate([("프리미엄 캐시미어 니트 베이지", 89_000), ("데일리 러닝화 화이트", 59_000),
                                       ("클래식 울 코트 네이비", 189_000), ("소프트 머플러 그레이", 29_000),
                                       ("라이트 크로스백 블랙", 49_000), ("베이직 맨투맨 카키", 35_000)] * 2, 1)
])


def _product_link(url: object) -> str:
    """A product page's URL as a tracked link of the message being rendered (plain without a tracking base)."""
    if url is None or url == "":
        return ""
    links = _LINKS.get()
    if links is None or links.tracking is None:
        return str(url)
    return _link(url)


def _price(value: object) -> str:
    return "" if value is None else krw(value)


def product_grid(items: object, columns: int = 2) -> markupsafe.Markup:
    """``{{ recommendations|product_grid }}`` in an e-mail's ``html``: the products as a table of ``columns`` cells
    per row (image when there is one, name, price, a tracked link); every value escaped, readable without images."""
    if not isinstance(columns, int) or not 1 <= columns <= 4:
        raise ValueError(f"product_grid takes 1 to 4 columns, not {columns!r}")
    products = list(items) if isinstance(items, list | tuple) else []
    if not products:
        return markupsafe.Markup("")
    esc = markupsafe.escape
    cells = []
    for item in products:
        url = item["url"] if isinstance(item, Mapping) else ""
        name, price, image = item.get("name"), item.get("price"), item.get("image_url")
        picture = (f'<a href="{esc(url)}"><img src="{esc(image)}" alt="{esc(name)}" width="240" '
                   f'style="display:block;width:100%;max-width:240px;height:auto;border:0"></a>') if image else ""
        cells.append(
            f'<td class="shopcrm-product" valign="top" width="{100 // columns}%" style="padding:8px">{picture}'
            f'<p style="margin:8px 0 4px"><a href="{esc(url)}">{esc(name)}</a></p>'
            f'<p style="margin:0"><strong>{esc(_price(price))}</strong></p></td>'
        )
    rows = []
    for start in range(0, len(cells), columns):
        row = cells[start:start + columns]
        row += [f'<td width="{100 // columns}%"></td>'] * (columns - len(row))
        rows.append("<tr>" + "".join(row) + "</tr>")
    return markupsafe.Markup('<table class="shopcrm-products" role="presentation" width="100%" cellpadding="0" '
                             'cellspacing="0" border="0">' + "".join(rows) + "</table>")


_LINE_MARK = re.compile("\ue000(\\d+)\ue001")


def _sms_line(items: object, max_bytes: int | None = None, sep: str = "\n") -> str:
    """``{{ recommendations|sms_line }}``: one line per product (name, price, link), as many whole products as fit.

    In an SMS/LMS the products fill what the message's byte budget (2,000 CP949 bytes of an LMS, ad lines
    included) leaves once the rest of the text is in; ``max_bytes`` caps the products' part further.  Products
    are never cut in the middle; one whose name cannot be sent by SMS is left out."""
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise ValueError(f"sms_line's max_bytes is a number of bytes, not {max_bytes!r}")
    products = tuple(i for i in (items if isinstance(items, list | tuple) else ()) if isinstance(i, RecommendedProduct))
    links = _LINKS.get()
    if links is None:
        return sep.join(_product_line(p, _product_link(p["product_url"])) for p in products)
    links.lines.append((products, max_bytes, str(sep)))
    return f"\ue000{len(links.lines) - 1}\ue001"


def _product_line(product: RecommendedProduct, url: str) -> str:
    return " ".join(x for x in (str(product["name"] or ""), _price(product["price"]), url) if x)


def _fill_lines(text: str, budget: int | None, *, escape: bool = False) -> str:
    """``text`` with each ``sms_line`` mark replaced by the products that fit: within ``budget`` CP949 bytes all
    marks together (None: no budget but each mark's own ``max_bytes``)."""
    links = _LINKS.get()
    if links is None or "\ue000" not in text:
        return text
    left = budget

    def fill(match: re.Match[str]) -> str:
        nonlocal left
        products, cap, sep = links.lines[int(match.group(1))]
        chosen: list[str] = []
        used = 0
        for product in products:
            target = product["product_url"]
            url = ("" if not target else links.tracking.link(links.key, str(target)) if links.tracking is not None
                   else str(target))
            line = _product_line(product, url)
            try:
                size = cp949_length(line) + (cp949_length(sep) if chosen else 0)
            except ValueError:
                continue  # a name SMS cannot carry
            if (cap is not None and used + size > cap) or (left is not None and size > left):
                break
            if target:
                _product_link(target)  # recorded as a tracked link of the message
            chosen.append(line)
            used += size
            if left is not None:
                left -= size
        out = sep.join(chosen)
        return str(markupsafe.escape(out)) if escape else out

    return _LINE_MARK.sub(fill, text)


@functools.lru_cache(maxsize=1024)
def _sample(tracking: TrackingPolicy, url: str | None) -> str:
    """The link to ``url`` (or the unsubscribe link, for None) of :data:`SAMPLE_KEY`'s message."""
    return tracking.unsubscribe(SAMPLE_KEY) if url is None else tracking.link(SAMPLE_KEY, url)


def _personal(shared: Rendered, tracking: TrackingPolicy, key: str, unsubscribe: bool) -> Rendered:
    """``shared`` (rendered for :data:`SAMPLE_KEY`) with the tokens of message ``key`` instead."""
    swaps = [(_sample(tracking, url), tracking.link(key, url)) for url in shared.links]
    if unsubscribe:
        swaps.append((_sample(tracking, None), tracking.unsubscribe(key)))
    if not swaps:
        return shared

    def swap(text: str) -> str:
        for old, new in swaps:
            text = text.replace(old, new)
        return text

    return attrs.evolve(
        shared, text=swap(shared.text), subject=None if shared.subject is None else swap(shared.subject),
        html=None if shared.html is None else swap(shared.html),
        variables=tuple((k, swap(v)) for k, v in shared.variables),
        buttons=tuple((n, swap(u)) for n, u in shared.buttons), headers=tuple((n, swap(v)) for n, v in shared.headers),
        items=tuple((t, d, i, swap(u), b) for t, d, i, u, b in shared.items),
    )


def uses_link(names: Sequence[str]) -> bool:
    """Whether templates reading ``names`` make tracked links: they call ``link`` or show recommended products."""
    return "link" in names or "recommendations" in names


def _josa_filter(pair: str) -> Any:
    def apply(word: object) -> str:
        return with_particle(word, pair)

    return apply


def _environment(autoescape: bool, limits: TemplateLimits) -> LimitedEnvironment:
    env = LimitedEnvironment(limits, undefined=jinja2.StrictUndefined, autoescape=autoescape, keep_trailing_newline=False)
    env.filters["krw"] = krw
    env.filters["date"] = format_date
    env.filters["josa"] = with_particle
    env.globals["link"] = _link
    env.filters["product_grid"] = product_grid
    env.filters["sms_line"] = _sms_line
    for pair in PARTICLES:
        env.filters[pair.replace("/", "")] = _josa_filter(pair)  # {{ name|은는 }}
    env.guard_filters()
    return env


class Renderer:
    """Renders content per channel; one instance caches compiled templates (cheap to create).

    Every render runs under ``limits`` (:class:`TemplateLimits`): a template that loops, multiplies or
    pads its way past them fails with a :class:`~shopcrm.errors.CampaignError` instead of hanging.
    """

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        self._text = _environment(autoescape=False, limits=self.limits)
        self._html = _environment(autoescape=True, limits=self.limits)
        self._cache: dict[tuple[bool, str], jinja2.Template] = {}
        self._names: dict[int, tuple[Content, tuple[str, ...]]] = {}
        self._rendered: dict[tuple[Any, ...], Rendered | CampaignError] = {}
        #: per content whose text template has no side effect (no link(), sms_line or product_grid): its rendered
        #: text by the values of the names the content reads, shared by the channels of a chain
        self._pure: dict[int, tuple[Content, bool]] = {}
        self._texts: dict[tuple[Any, ...], str] = {}
        #: per template source, the names it reads from the context (:meth:`_reads`)
        self._source_names: dict[str, tuple[str, ...]] = {}
        #: the last body rendered for a read-only context whose values are unhashable: its content, context and text
        self._last_body: tuple[Content, Mapping[str, Any], str] | None = None
        #: per template source: whether it has no side effect (:meth:`_side_effect_free`); the texts rendered by values
        self._free: dict[str, bool] = {}
        self._by_values: dict[tuple[Any, ...], str] = {}
        #: per template source: the names it reads only through attribute look-ups, and those attributes
        self._paths: dict[str, dict[str, tuple[str, ...]]] = {}
        #: per compiled template (by id): the template and its globals as one dict (:meth:`_context`)
        self._globals: dict[int, tuple[jinja2.Template, dict[str, Any]]] = {}
        #: per text template source: its parts when it is simple enough to render without jinja2 (:meth:`_simple`)
        self._simple_parts: dict[str, _SimplePlan | None] = {}
        #: per (content, channel): the templates :meth:`_quick` renders, or None when it cannot (:meth:`_quick_sources`)
        self._quick_plans: dict[tuple[int, str], tuple[Content, tuple[str, ...] | None]] = {}
        #: the texts :meth:`_quick` rendered last, by source, and the read-only context they were rendered with
        self._quick_last: tuple[Mapping[str, Any], dict[str, str]] | None = None

    def names(self, content: Content) -> tuple[str, ...]:
        """The context names ``content`` reads (every template of it), sorted; ``link`` when it makes tracked links."""
        found = self._names.get(id(content))
        if found is None or found[0] is not content:
            sources = [content.text, content.subject, content.html]
            if content.alimtalk is not None:
                sources += list(content.alimtalk.variables.values())
            sources += [x for b in content.buttons for x in (b.name, b.url)]
            used: set[str] = set()
            for source in sources:
                if source is not None:
                    with contextlib.suppress(Exception):  # a syntax error, a too-deep nesting: render reports it
                        tree = self._text.parse(source)
                        used |= jinja2.meta.find_undeclared_variables(tree)
                        if any(n.name == "link" for n in tree.find_all(jinja2.nodes.Name)):
                            used.add("link")  # a global, so not "undeclared"; its output is per message
            found = (content, tuple(sorted(used)))
            self._names[id(content)] = found
        return found[1]

    def render_cached(
        self, content: Content, channel: str, context: Mapping[str, Any], *, advertising: bool, decorations: Decorations,
        message_key: str | None = None,
    ) -> Rendered:
        """:meth:`render`, remembering results by the values of the names the content reads: customers who
        share those values (the same first name, the same coupon) share one rendering.  A message with tracked
        links (or a signed unsubscribe link) shares the rendering too, with its own ``message_key``'s tokens in it."""
        names = self.names(content)
        tracking = decorations.tracking
        personal = message_key is not _SHARED and tracking is not None and (
            uses_link(names) or (channel == "email" and bool(tracking.unsubscribe_url)))
        if personal and (message_key is None or not _HEX_KEY.fullmatch(message_key)):
            return self.render(content, channel, context, advertising=advertising, decorations=decorations,
                               message_key=message_key)
        get = context.get
        values = tuple([get(n, _MISSING) for n in names])
        if channel == "email":
            values += (context.get("customer_id"),)  # the unsubscribe link is personal
        if personal:
            # rendered once for SAMPLE_KEY and shared; each message gets its own tokens swapped in (the same length,
            # so every byte count and the SMS/LMS choice stay as measured)
            assert tracking is not None
            assert message_key is not None
            shared = self.render_cached(content, channel, context, advertising=advertising, decorations=decorations,
                                        message_key=_SHARED)
            return _personal(shared, tracking, message_key, channel == "email" and bool(tracking.unsubscribe_url))
        # id(content) is stable: self._names keeps every content seen alive
        key = (id(content), channel, advertising, decorations, *_apart(values))
        try:
            if not _UNHASHABLE.isdisjoint(map(type, values)):
                raise TypeError  # what hashing the key would raise, without hashing it
            found = self._rendered.get(key)
        except TypeError:  # unhashable values (lists of cart items, an event's properties): render every time
            return self._fresh(content, channel, context, advertising=advertising, decorations=decorations,
                               message_key=message_key)
        if found is None:
            try:
                found = self._fresh(content, channel, context, advertising=advertising, decorations=decorations,
                                    message_key=message_key)
            except CampaignError as error:
                found = error
            if len(self._rendered) < 100_000:
                self._rendered[key] = found
        if isinstance(found, CampaignError):
            raise CampaignError(found.problems)  # a fresh error: re-raising one object would pile up tracebacks
        return found

    def _fresh(
        self, content: Content, channel: str, context: Mapping[str, Any], *, advertising: bool, decorations: Decorations,
        message_key: str | None,
    ) -> Rendered:
        """A rendering not remembered: :meth:`_quick` when it can, else :meth:`render`."""
        return self._quick(content, channel, context, advertising=advertising, decorations=decorations) or self.render(
            content, channel, context, advertising=advertising, decorations=decorations, message_key=message_key)

    def template(self, source: str, *, html: bool = False, where: str = "") -> jinja2.Template:
        key = (html, source)
        found = self._cache.get(key)
        if found is None:
            if len(source) > self.limits.max_source_chars:
                raise CampaignError([(where, f"the template has {len(source):,} characters; at most {self.limits.max_source_chars:,}")])
            try:
                found = (self._html if html else self._text).from_string(source)
            except jinja2.TemplateSyntaxError as error:
                raise CampaignError([(where, f"template syntax error on line {error.lineno}: {error.message}")]) from None
            except RecursionError:
                raise CampaignError([(where, "the template nests too deeply to compile")]) from None
            except Exception as error:
                raise CampaignError([(where, f"the template does not compile: {_describe(error)}")]) from None
            self._cache[key] = found
        return found

    def text(self, source: str, context: Mapping[str, Any], *, html: bool = False, where: str = "") -> str:
        """One template rendered with ``context`` within the renderer's limits.

        Anything that goes wrong (a missing variable, a bad filter input, a division by zero, a limit) is a
        :class:`~shopcrm.errors.CampaignError` naming ``where``: one customer's failure never escapes as
        another exception."""
        template = self.template(source, html=html, where=where)
        reads = self._reads(source, context)
        if not html:  # a simple template is rendered as cheaply as a remembered rendering is found (not remembered)
            simple = self._simple(source, reads)
            if simple is not None:
                return simple
        key = self._text_key(source, html, reads)
        if key is not None:
            found = self._by_values.get(key)
            if found is not None:
                return found
        try:
            text = metered(self.limits, template.root_render_func(self._context(template, reads))).strip()
        except jinja2.UndefinedError as error:
            available = ", ".join(sorted(context)) or "nothing"
            raise CampaignError([(where, f"{error.message}; the context has {available}")]) from None
        except jinja2.exceptions.SecurityError as error:
            raise CampaignError([(where, f"the template tried something the sandbox forbids: {error}")]) from None
        except TemplateLimitError as error:
            raise CampaignError([(where, str(error))]) from None
        except (ValueError, TypeError) as error:
            raise CampaignError([(where, str(error))]) from None
        except RecursionError:
            raise CampaignError([(where, "the template recursed too deeply (a macro calling itself?)")]) from None
        except Exception as error:
            raise CampaignError([(where, _describe(error))]) from None
        if key is not None and len(self._by_values) < 100_000:
            self._by_values[key] = text
        return text

    def _text_key(self, source: str, html: bool, reads: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """What a rendering of ``source`` is remembered by (:attr:`_by_values`): the values it reads, each with its
        type (and a float or decimal by its exact text: values that are equal but print differently, such as 1,
        1.0 and True, never share), when every one is plain (text, a number, a flag, None, a naive instant) and the
        template has no side effect; else None.  A mapping the template reads only as ``name.attribute`` (an
        event's properties: ``{{ event.amount|krw }}``) is remembered by those attributes' plain values, looked up
        as the template looks them up."""
        free = self._free.get(source)
        if free is None:
            free = self._free[source] = self._side_effect_free(source)
        if not free:
            return None
        key: list[Any] = [html, source]
        for name, value in reads.items():
            kind = type(value)
            if kind in _PLAIN or (kind in _INSTANTS and getattr(value, "tzinfo", None) is None):
                key += (name, kind, value)
                continue
            attributes = self._attributes(source).get(name) if kind is dict else None
            if attributes is None:
                return None
            environment = self._html if html else self._text
            key.append(name)
            for attribute in attributes:
                found = environment.getattr(value, attribute)
                kind = type(found)
                if not (kind in _PLAIN or (kind in _INSTANTS and getattr(found, "tzinfo", None) is None)):
                    return None
                key += (attribute, kind, repr(found) if kind is float or kind is Decimal else found)
        return tuple(key)

    def _attributes(self, source: str) -> dict[str, tuple[str, ...]]:
        """Per name the template ``source`` reads only as ``name.attribute`` (never alone, never as ``name[...]``), those
        attributes, sorted (remembered per source)."""
        found = self._paths.get(source)
        if found is None:
            found = {}
            try:
                tree = self._text.parse(source)
            except Exception:  # a syntax error: the template's compilation reports it
                tree = None
            if tree is not None:
                through: dict[str, set[str]] = defaultdict(set)
                for node in tree.find_all(jinja2.nodes.Getattr):
                    if isinstance(node.node, jinja2.nodes.Name):
                        through[node.node.name].add(node.attr)
                bare = Counter(n.name for n in tree.find_all(jinja2.nodes.Name))
                for name, attributes in through.items():
                    # every appearance of the name is the object of one of those look-ups
                    uses = sum(1 for node in tree.find_all(jinja2.nodes.Getattr)
                               if isinstance(node.node, jinja2.nodes.Name) and node.node.name == name)
                    if bare[name] == uses:
                        found[name] = tuple(sorted(attributes))
            self._paths[source] = found
        return found

    def _simple(self, source: str, reads: Mapping[str, Any]) -> str | None:
        """What jinja2 renders from the text template ``source`` with ``reads``, computed without it, or None (then
        jinja2 renders).  Only for a template made of text and ``{{ name }}``, ``{{ name.attribute }}`` outputs, each
        with any of the pure one-value filters (``krw``, ``date``, the particles: ``{{ name|은는 }}``), first of them
        perhaps ``default('text')`` (the text where the value is undefined), when every name is in ``reads`` (or
        undefined under such a default) and every value is plain and small: then jinja2 yields the text and ``str`` of each
        output, and no limit, undefined value or failing filter can stop it (anything else goes to jinja2, which
        renders or reports it)."""
        if source in self._simple_parts:
            plan = self._simple_parts[source]
        else:
            plan = self._simple_parts[source] = self._simple_plan(source)
        if plan is None:
            return None
        pieces, outputs, work, size = plan
        out = list(pieces)
        for index, name, attribute, item, filters, fallback in outputs:
            value = reads.get(name, _MISSING)
            if value is _MISSING:
                # undefined: ``default('text')`` gives its text, unless the name is a global jinja2 would read
                if fallback is None or attribute is not None or name in self._text.globals:
                    return None
                value = fallback
            elif attribute is not None:
                if type(value) is not dict:
                    return None
                # jinja2 reads a dict's attribute as its item unless dict has an attribute of that name
                value = value.get(attribute, _MISSING) if item else self._text.getattr(value, attribute)
                if value is _MISSING:
                    if fallback is None:
                        return None
                    value = fallback  # a dict without the item: undefined, so the default's text
            for function in filters:
                if type(value) not in _SIMPLE_INPUTS or (type(value) is str and len(value) > 1000):
                    return None
                try:
                    value = function(value)
                except Exception:  # jinja2 reports it, naming the template
                    return None
            kind = type(value)
            if kind is str:
                text = value
            elif kind not in _SIMPLE_OUTPUTS or (kind is int and not -10**18 < value < 10**18):
                return None
            else:
                text = str(value)
            if len(text) > 1000:
                return None
            out[index] = text
            work += (1 + len(filters)) * 3 * (2 + len(text) // 64)
            size += len(text)
        limits = self.limits
        if work > limits.max_work // 2 or size > limits.max_output_chars or size > limits.max_value_size:
            return None
        return "".join(out).strip()

    def _simple_plan(self, source: str) -> _SimplePlan | None:
        """What :meth:`_simple` renders ``source`` from: its pieces (the text, "" where an output goes); per output
        its piece's index, the name, the attribute read from it (or None), whether that attribute is read as the
        dict's item, and the filters' functions in the order applied; the work and size of the text pieces.  None
        for any other template."""
        try:
            tree = self._text.parse(source)
        except Exception:  # a syntax error: jinja2 reports it
            return None
        pieces: list[str] = []
        outputs: list[tuple[int, str, str | None, bool, tuple[Any, ...], str | None]] = []
        work = size = 0
        for statement in tree.body:
            if not isinstance(statement, jinja2.nodes.Output):
                return None
            for output in statement.nodes:
                if isinstance(output, jinja2.nodes.TemplateData):
                    pieces.append(output.data)
                    work += 2 + len(output.data) // 64
                    size += len(output.data)
                    continue
                node: jinja2.nodes.Node | None = output
                filters: list[Any] = []
                fallback: str | None = None
                while isinstance(node, jinja2.nodes.Filter):
                    if fallback is not None:  # a filter under default(...): default must be applied first
                        return None
                    if (node.name in ("default", "d") and len(node.args) == 1 and not node.kwargs and not node.dyn_args
                            and not node.dyn_kwargs and isinstance(node.args[0], jinja2.nodes.Const)
                            and type(node.args[0].value) is str and len(node.args[0].value) <= 1000
                            and getattr(self._text.filters.get(node.name), "__wrapped__", None) is jinja2.filters.do_default):
                        # ``default('text')`` on the value read: the text where it is undefined, else the value
                        fallback = node.args[0].value
                        node = node.node
                        continue
                    if node.name not in _SIMPLE_FILTERS or node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
                        return None
                    function = getattr(self._text.filters.get(node.name), "__wrapped__", None)
                    if function is None or (function is not _SIMPLE_FILTERS[node.name] and node.name not in _PARTICLE_FILTERS):
                        return None
                    filters.append(function)
                    node = node.node
                attribute = None
                if isinstance(node, jinja2.nodes.Getattr):
                    attribute, node = node.attr, node.node
                if not isinstance(node, jinja2.nodes.Name) or node.ctx != "load":
                    return None
                # a default is the first filter applied (charged as one, like jinja2's)
                applied = tuple(reversed(filters)) if fallback is None else (_defined, *reversed(filters))
                outputs.append((len(pieces), node.name, attribute, attribute is not None and not hasattr(dict, attribute),
                                applied, fallback))
                pieces.append("")
        return tuple(pieces), tuple(outputs), work, size

    def _context(self, template: jinja2.Template, reads: dict[str, Any]) -> jinja2.runtime.Context:
        """What ``template.generate(reads)`` renders in: the template's globals (read once per template, not through
        jinja2's chain of mappings at each render) with the values it reads over them."""
        found = self._globals.get(id(template))
        if found is None or found[0] is not template:
            found = self._globals[id(template)] = (template, dict(template.globals))
        return jinja2.runtime.new_context(template.environment, template.name, template.blocks, {**found[1], **reads},
                                          shared=True)

    def _reads(self, source: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """The values of ``context`` the template ``source`` reads (its undeclared names), as the plain dict jinja2
        copies for each render: a context computed name by name is asked only for those, not for every name it has
        (the template cannot see any other name; a name it reads that the context lacks stays undefined)."""
        names = self._source_names.get(source)
        if names is None:
            try:
                names = tuple(sorted(jinja2.meta.find_undeclared_variables(self._text.parse(source))))
            except Exception:  # a syntax error: the template's compilation reports it
                names = None
            if names is None:
                return dict(context)
            self._source_names[source] = names
        get = context.get
        return {name: value for name in names if (value := get(name, _MISSING)) is not _MISSING}

    def render(
        self,
        content: Content,
        channel: str,
        context: Mapping[str, Any],
        *,
        advertising: bool,
        decorations: Decorations,
        where: str = "",
        message_key: str | None = None,
    ) -> Rendered:
        """``content`` rendered for ``channel`` (a chain entry: sms, alimtalk, brand_message, email, push, webhook).

        Raises only :class:`~shopcrm.errors.CampaignError`.  Advertising fails closed: an SMS without the
        sender and opt-out lines, or a Brand Message without the opt-out line, is refused (K6, K7).
        ``{{ link(url) }}`` becomes a tracked link of ``message_key`` (:data:`SAMPLE_KEY` when None: a check),
        before any length is measured: an SMS that a tracked link pushes past 90 bytes is an LMS."""
        at = f"{where}.{channel}" if where else channel
        links = _Links(message_key if message_key and message_key is not _SHARED else SAMPLE_KEY, decorations.tracking)
        token = _LINKS.set(links)
        try:
            rendered = self._render(content, channel, context, advertising=advertising, decorations=decorations, at=at,
                                    key=links.key)
        except CampaignError:
            raise
        except Exception as error:
            raise CampaignError([(at, _describe(error))]) from None
        finally:
            _LINKS.reset(token)
        return attrs.evolve(rendered, links=tuple(links.urls)) if links.urls else rendered

    def _render(
        self, content: Content, channel: str, context: Mapping[str, Any], *, advertising: bool, decorations: Decorations,
        at: str, key: str,
    ) -> Rendered:
        if advertising:
            _require_ad_lines(channel, decorations, at)
        body = self._body(content, context, at)
        subject = None if content.subject is None else _fill_lines(self.text(content.subject, context, where=f"{at}.subject"), None)
        buttons = tuple((_fill_lines(self.text(b.name, context, where=f"{at}.buttons"), None),
                         _fill_lines(self.text(b.url, context, where=f"{at}.buttons"), None))
                        for b in content.buttons)
        return self._assemble(content, channel, context, body, subject, buttons, advertising=advertising,
                              decorations=decorations, at=at, key=key)

    def _assemble(
        self, content: Content, channel: str, context: Mapping[str, Any], body: str, subject: str | None,
        buttons: tuple[tuple[str, str], ...], *, advertising: bool, decorations: Decorations, at: str, key: str,
        variables: Mapping[str, str] | None = None,
    ) -> Rendered:
        """The message for ``channel`` from its rendered body, subject and buttons (``variables``: the AlimTalk
        variables' texts, when rendered already)."""
        if channel == "sms":
            return self._sms(content, body, subject, context, advertising, decorations, at)
        body = _fill_lines(body, None)  # sms_line: every product (only SMS/LMS has a byte budget)
        if channel == "alimtalk":
            return self._alimtalk(content, context, buttons, at, variables)
        if channel == "brand_message":
            if advertising and decorations.opt_out_line:
                body = f"{body}\n{decorations.opt_out_line}"
            layout = content.brand_message.layout if content.brand_message is not None else "text"
            if layout != "text":
                return self._brand_layout(content, layout, body, buttons, context, at)
            self._check_buttons(buttons, at)
            if len(body) > LIMITS["brand_message_chars"]:
                raise CampaignError([(at, f"{len(body):,} characters; a Brand Message holds at most {LIMITS['brand_message_chars']:,}")])
            if (breaks := _line_breaks(body)) > LIMITS["brand_message_line_breaks"]:
                raise CampaignError([(at, f"{breaks} line breaks (the opt-out line's included); a Brand Message holds at "
                                          f"most {LIMITS['brand_message_line_breaks']}")])
            return Rendered(channel=channel, kind="brand_message", text=body, buttons=buttons, image_url=content.image_url)
        if channel == "email":
            if subject is None:
                raise CampaignError([(f"{at}.subject", "an e-mail needs a subject; set content.subject")])
            html = None if content.html is None else _fill_lines(
                self.text(content.html, context, html=True, where=f"{at}.html"), None, escape=True)
            headers: tuple[tuple[str, str], ...] = ()
            if advertising:
                if decorations.ad_prefix:
                    subject = f"{decorations.ad_prefix} {subject}"
                tracking = decorations.tracking
                if tracking is not None and tracking.unsubscribe_url:  # RFC 8058 one-click, signed per message
                    url = tracking.unsubscribe(key)
                else:
                    url = decorations.unsubscribe_url.format(customer_id=quote(str(context.get("customer_id", "")), safe=""))
                if not url:
                    raise CampaignError([(at, "an advertising e-mail needs an unsubscribe URL; set the policy's "
                                              "unsubscribe_url or TrackingPolicy.unsubscribe_url")])
                footer = decorations.email_footer.format(unsubscribe_url=url)
                body = f"{body}\n\n{footer}"
                if html is not None:
                    html = f"{html}<p>{markupsafe.escape(footer)}</p>"
                headers = (("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            return Rendered(channel=channel, kind="email", text=body, subject=subject, html=html, headers=headers)
        if channel == "push":
            if advertising and decorations.push_lines:
                body = _ad_text(body, decorations)
            elif advertising and decorations.ad_prefix:
                body = f"{decorations.ad_prefix} {body}"
            if len(body) > LIMITS["push_chars"]:
                raise CampaignError([(at, f"{len(body):,} characters; a push body holds at most {LIMITS['push_chars']:,}")])
            return Rendered(channel=channel, kind="push", text=body, subject=subject, buttons=buttons, image_url=content.image_url)
        if channel == "webhook":
            return Rendered(channel=channel, kind="webhook", text=body, subject=subject, buttons=buttons, image_url=content.image_url)
        raise CampaignError([(at, f"unknown channel {channel!r}")])

    def _quick(
        self, content: Content, channel: str, context: Mapping[str, Any], *, advertising: bool, decorations: Decorations,
    ) -> Rendered | None:
        """What :meth:`render` returns for ``content`` on ``channel``, or None (then :meth:`render` renders it or
        reports what failed): for an SMS/LMS/MMS, AlimTalk, push or webhook message or a plain Brand Message whose
        every template (text, subject, buttons, AlimTalk variables) is simple and has no side effect, each rendered
        by :meth:`_simple` as :meth:`text` would render it, without the general path's bookkeeping (its caches, the
        links' context; a triggered tick renders most messages once: an order confirmation names its order).  A
        read-only context asked again (a chain's next channel) reuses the texts rendered for it."""
        plan = self._quick_plans.get((id(content), channel))
        if plan is None or plan[0] is not content:  # id(content) is stable while this entry keeps it alive
            plan = self._quick_plans[(id(content), channel)] = (content, self._quick_sources(content, channel))
        sources = plan[1]
        if sources is None:
            return None
        last = self._quick_last
        texts = last[1] if last is not None and last[0] is context and not isinstance(context, MutableMapping) else {}
        for source in sources:
            if source not in texts:
                text = self._simple(source, self._reads(source, context))
                if text is None or "\ue000" in text:  # not simple with these values, or a product line's mark
                    return None
                texts[source] = text
        self._quick_last = (context, texts)
        if advertising and "\ue000" in f"{decorations.ad_prefix}{decorations.sender_line}{decorations.opt_out_line}":
            return None
        try:
            if advertising:
                _require_ad_lines(channel, decorations, channel)
            buttons = tuple((texts[b.name], texts[b.url]) for b in content.buttons)
            variables = ({name: texts[source] for name, source in content.alimtalk.variables.items()}
                         if channel == "alimtalk" and content.alimtalk is not None else None)
            return self._assemble(content, channel, context, texts[content.text],
                                  None if content.subject is None else texts[content.subject], buttons,
                                  advertising=advertising, decorations=decorations, at=channel, key=SAMPLE_KEY,
                                  variables=variables)
        except CampaignError:  # the general path reports it, naming where
            return None

    def _quick_sources(self, content: Content, channel: str) -> tuple[str, ...] | None:
        """The templates :meth:`_quick` renders for ``content`` on ``channel`` (each compiled, within the size
        limit, simple and free of side effects), or None when it cannot render it."""
        if channel not in ("sms", "alimtalk", "push", "webhook", "brand_message"):
            return None  # e-mail: an unsubscribe link per customer and an HTML part
        if channel == "brand_message" and content.brand_message is not None and content.brand_message.layout != "text":
            return None
        if channel == "alimtalk" and content.alimtalk is None:
            return None
        sources = [content.text, *([content.subject] if content.subject is not None else []),
                   *(x for b in content.buttons for x in (b.name, b.url)),
                   *(content.alimtalk.variables.values() if channel == "alimtalk" and content.alimtalk is not None else ())]
        for source in sources:
            if len(source) > self.limits.max_source_chars or not self._side_effect_free(source):
                return None
            if source not in self._simple_parts:
                self._simple_parts[source] = self._simple_plan(source)
            if self._simple_parts[source] is None:
                return None
            try:
                self.template(source)
            except CampaignError:
                return None
        return tuple(dict.fromkeys(sources))

    def _body(self, content: Content, context: Mapping[str, Any], at: str) -> str:
        """``self.text(content.text, ...)``, remembered by the values of the names the content reads when its text
        template has no side effect: the channels of a chain (a Brand Message and its SMS fallback) and customers
        sharing those values render it once.  A failure is not remembered (its message names the channel)."""
        found = self._pure.get(id(content))
        if found is None or found[0] is not content:
            found = self._pure[id(content)] = (content, self._side_effect_free(content.text))
        if not found[1]:
            return self.text(content.text, context, where=f"{at}.text")
        get = context.get
        values = [get(n, _MISSING) for n in self.names(content)]
        key = (id(content), *_apart(values))
        try:
            text = self._texts.get(key)
        except TypeError:  # unhashable values (an event's properties): the channels of one message's chain share it
            if isinstance(context, MutableMapping):
                return self.text(content.text, context, where=f"{at}.text")
            last = self._last_body  # a read-only context (the planner's): the same object gives the same values
            if last is not None and last[0] is content and last[1] is context:
                return last[2]
            text = self.text(content.text, context, where=f"{at}.text")
            self._last_body = (content, context, text)
            return text
        if text is None:
            text = self.text(content.text, context, where=f"{at}.text")
            if len(self._texts) < 100_000:
                self._texts[key] = text
        return text

    def _side_effect_free(self, source: str) -> bool:
        """Whether rendering ``source`` only turns the values it reads into text: it names no global (``link``
        records the message's tracked links; ``lipsum`` is random) and applies no ``sms_line`` or ``product_grid``
        (they record the message's product lines)."""
        try:
            tree = self._text.parse(source)
        except Exception:  # a syntax error: render reports it
            return False
        return not any(n.name in self._text.globals for n in tree.find_all(jinja2.nodes.Name)) and not any(
            f.name in ("sms_line", "product_grid") for f in tree.find_all(jinja2.nodes.Filter))

    def _brand_layout(
        self, content: Content, layout: str, body: str, buttons: tuple[tuple[str, str], ...], context: Mapping[str, Any],
        at: str,
    ) -> Rendered:
        """A Brand Message list (wide item list) or carousel (carousel feed) of the recommended products that have
        an image: product names longer than a title holds are shortened with an ellipsis; too few products, a
        header or buttons over their limits fail."""
        assert content.brand_message is not None
        low, high = BRAND_LAYOUT_ITEMS[layout]
        offered = [p for p in (context.get("recommendations") or ()) if isinstance(p, Mapping)]
        pictured = [p for p in offered if p.get("image_url")][:high]
        if len(pictured) < low:
            raise CampaignError([(f"{at}.brand_message", f"a Brand Message {layout} needs at least {low} recommended "
                                  f"products with an image; {len(pictured)} of the {len(offered)} recommended have one "
                                  "(ask for more with recommend.k, or send the text layout)")])
        problems: list[tuple[str, str]] = []
        header = None
        items: list[tuple[str, str, str, str, str]] = []
        if layout == "list":
            header = self.text(content.brand_message.header or "", context, where=f"{at}.brand_message.header")
            if not header or len(header) > LIMITS["brand_list_header_chars"]:
                problems.append((f"{at}.brand_message.header", f"the list header {header!r} has {len(header)} "
                                 f"characters; it needs 1 to {LIMITS['brand_list_header_chars']}"))
            if len(buttons) > LIMITS["brand_list_buttons"]:
                problems.append((f"{at}.buttons", f"{len(buttons)} buttons; a Brand Message list allows at most "
                                 f"{LIMITS['brand_list_buttons']}"))
            for i, product in enumerate(pictured):
                limit = LIMITS["brand_list_main_title_chars"] if i == 0 else LIMITS["brand_list_title_chars"]
                items.append((_shorten(str(product.get("name") or ""), limit), _price(product.get("price")),
                              str(product["image_url"]), str(product["url"]), ""))
        else:
            for product in pictured:
                text = " · ".join(x for x in (_price(product.get("price")), str(product.get("category") or "")) if x)
                items.append((_shorten(str(product.get("name") or ""), LIMITS["brand_card_header_chars"]),
                              _shorten(text, LIMITS["brand_card_text_chars"]), str(product["image_url"]), str(product["url"]),
                              content.brand_message.item_button))
        if problems:
            raise CampaignError(problems)
        if layout == "list":
            self._check_buttons(buttons, at, name_chars=LIMITS["brand_list_button_chars"])
        return Rendered(channel="brand_message", kind="brand_message", text=body, buttons=buttons if layout == "list" else (),
                        layout=layout, header=header if layout == "list" else None, items=tuple(items))

    def _sms(
        self, content: Content, body: str, subject: str | None, context: Mapping[str, Any],
        advertising: bool, decorations: Decorations, at: str,
    ) -> Rendered:
        # one line break is one byte pair however it came (a value's CR LF or CR included); an empty subject is none
        # (an LMS billed for a subject nobody sees)
        body = body.replace("\r\n", "\n").replace("\r", "\n")
        if subject is not None and not subject.strip():
            subject = None
        if advertising:
            body = _ad_text(body, decorations)
        if "\ue000" in body:  # sms_line: products fill what the LMS leaves once the rest (ad lines included) is in
            rest = _LINE_MARK.sub("", body)
            try:
                budget = LIMITS["lms_bytes"] - cp949_length(rest)
            except ValueError as error:
                raise CampaignError([(f"{at}.text", str(error))]) from None
            body = _fill_lines(body, max(budget, 0))
        problems: list[tuple[str, str]] = []
        try:
            size = cp949_length(body)
        except ValueError as error:
            raise CampaignError([(f"{at}.text", str(error))]) from None
        if subject is not None:
            try:
                subject_size = cp949_length(subject)
            except ValueError as error:
                raise CampaignError([(f"{at}.subject", str(error))]) from None
            if subject_size > LIMITS["subject_bytes"]:
                problems.append((f"{at}.subject", f"{subject_size} bytes (CP949); an LMS/MMS subject holds at most {LIMITS['subject_bytes']}"))
        if size > LIMITS["lms_bytes"]:
            problems.append((f"{at}.text", f"{size:,} bytes (CP949) with the required ad lines; an LMS/MMS holds at most {LIMITS['lms_bytes']:,}"))
        if problems:
            raise CampaignError(problems)
        if content.image_url:
            kind = "mms"
        elif size <= LIMITS["sms_bytes"] and subject is None:
            kind = "sms"
        else:
            kind = "lms"
        return Rendered(channel="sms", kind=kind, text=body, subject=subject if kind != "sms" else None, image_url=content.image_url)

    def _alimtalk(
        self, content: Content, context: Mapping[str, Any], buttons: tuple[tuple[str, str], ...], at: str,
        rendered: Mapping[str, str] | None = None,
    ) -> Rendered:
        """The AlimTalk of ``content``: its approved body with every slot filled by its variable's template
        (``rendered``: those texts, when rendered already)."""
        if content.alimtalk is None:
            raise CampaignError([(f"{at}", "AlimTalk needs a pre-approved template: set content.alimtalk (template_code, body, variables)")])
        template = content.alimtalk
        slots = list(_slots(template.body))
        problems: list[tuple[str, str]] = []
        missing = [s for s in slots if s not in template.variables]
        extra = [v for v in template.variables if v not in slots]
        if missing:
            problems.append((f"{at}.variables", f"the approved body uses #{{{missing[0]}}}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                             + " with no value; map every slot in alimtalk.variables"))
        if extra:
            problems.append((f"{at}.variables", f"{extra} are not slots of the approved body (its slots: {slots})"))
        if len(slots) > LIMITS["alimtalk_variables"]:
            problems.append((f"{at}.body", f"{len(slots)} variables; AlimTalk allows at most {LIMITS['alimtalk_variables']}"))
        if problems:
            raise CampaignError(problems)
        values = dict(rendered) if rendered is not None else {
            name: _fill_lines(self.text(source, context, where=f"{at}.variables.{name}"), None)
            for name, source in template.variables.items()}
        text = _SLOT.sub(lambda m: values[m.group(1)], template.body)
        if len(text) > LIMITS["alimtalk_chars"]:
            raise CampaignError([(at, f"{len(text):,} characters once filled in; AlimTalk holds at most {LIMITS['alimtalk_chars']:,}")])
        self._check_buttons(buttons, at)
        return Rendered(
            channel="alimtalk", kind="alimtalk", text=text, template_code=template.template_code,
            variables=tuple((f"#{{{k}}}", v) for k, v in values.items()), buttons=buttons,
        )

    def _check_buttons(self, buttons: Sequence[tuple[str, str]], at: str, *, name_chars: int = LIMITS["button_name_chars"]) -> None:
        if len(buttons) > LIMITS["buttons"]:
            raise CampaignError([(f"{at}.buttons", f"{len(buttons)} buttons; Kakao messages allow at most {LIMITS['buttons']}")])
        for name, _ in buttons:
            if len(name) > name_chars:
                raise CampaignError([(f"{at}.buttons", f"button name {name!r} has {len(name)} characters; at most {name_chars}")])


def _line_breaks(text: str) -> int:
    """The line breaks of ``text``: CR LF, CR and LF each one."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


@functools.lru_cache(maxsize=1024)
def _slots(body: str) -> tuple[str, ...]:
    """The slots (``#{name}``) of an AlimTalk body, each once, in order of first use."""
    return tuple(dict.fromkeys(_SLOT.findall(body)))


#: the types of the context values a rendering is never remembered by (they cannot be hashed)
_UNHASHABLE = frozenset({dict, list, set})
#: what :meth:`Renderer._simple` renders a template from (see :meth:`Renderer._simple_plan`)
_SimplePlan = tuple[tuple[str, ...], tuple[tuple[int, str, str | None, bool, tuple[Any, ...], str | None], ...], int, int]

#: the types whose equal values may print differently: kept apart by their exact text in a cache key (:func:`_apart`)
_BY_TEXT = frozenset({float, Decimal, datetime, time})


def _apart(values: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` as a cache key that keeps apart the equal values that print differently: each with its type (1,
    1.0 and True), and a float, decimal or instant by its exact text (-0.0 and 0.0, Decimal("1.0") and
    Decimal("1"), one instant in two zones)."""
    kinds = tuple(map(type, values))
    if not _BY_TEXT.isdisjoint(kinds):
        values = [repr(v) if type(v) in _BY_TEXT else v for v in values]
    return (*values, *kinds)


#: the filters :meth:`Renderer._simple` applies itself (pure functions of one value: no context, no meter), with
#: the function each wraps (the particle filters wrap closures made per environment: checked by name)
_PARTICLE_FILTERS = frozenset(pair.replace("/", "") for pair in PARTICLES)
_SIMPLE_FILTERS: dict[str, Any] = {"krw": krw, "date": format_date, **dict.fromkeys(_PARTICLE_FILTERS)}
#: the values :meth:`Renderer._simple` hands to a filter, and those it prints (``str``, as jinja2 prints them)
_SIMPLE_INPUTS = frozenset({str, int, float, Decimal, bool, date, datetime, type(None)})
_SIMPLE_OUTPUTS = frozenset({str, int, float, Decimal, bool})


def _defined(value: Any) -> Any:
    """``default('text')`` applied to a defined value: the value itself (the text replaces only an undefined one)."""
    return value


def _shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _ad_text(body: str, decorations: Decorations) -> str:
    """An advertising text: the prefix and the sender line first (K5, K6), the opt-out line last (K7)."""
    head = " ".join(x for x in (decorations.ad_prefix, decorations.sender_line) if x)
    lines = [f"{head}\n{body}" if head else body]
    if decorations.opt_out_line:
        lines.append(decorations.opt_out_line)
    return "\n".join(lines)


def _require_ad_lines(channel: str, decorations: Decorations, at: str) -> None:
    """Fail closed: the lines an advertising text must carry (K6 sender, K7 opt-out) are there."""
    missing = []
    texts = ("sms", "push") if decorations.push_lines else ("sms",)
    if channel in texts and not decorations.sender_line.strip():
        missing.append("the sender line (K6: set MessagingPolicy.sender_name and sender_contact)")
    if channel in (*texts, "brand_message") and not decorations.opt_out_line.strip():
        missing.append("the free opt-out line (K7: set MessagingPolicy.opt_out_number, 무료수신거부 080-...)")
    if missing:
        raise CampaignError([(at, f"an advertising {channel} message needs {' and '.join(missing)}; refusing to render it without")])


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
