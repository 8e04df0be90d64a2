"""shopcrm.web through httpx's ASGI transport: click redirects, Solapi delivery reports and RFC 8058 one-click
unsubscribe, against a real (embedded) shop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import ConsoleChannel
from shopcrm.dispatching import Dispatcher
from shopcrm.tracking import TrackingPolicy
from shopcrm.web import create_app

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
TRACKING = TrackingPolicy(base_url="https://shop.example/r", secret="web-test-secret-0123456789",
                          unsubscribe_url="https://shop.example/u")
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         tracking=TRACKING)
HOOK_SECRET = "hook-secret-0123456789"


def make_shop(channels: tuple[str, ...], text: str, subject: str | None = None) -> Shop:
    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-0000-0000", "email": "c0@example.kr",
                          "sms_consent": True, "email_consent": True}])
    content: dict[str, Any] = {"text": text, **({"subject": subject} if subject else {})}
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": list(channels),
                        "variants": [{"name": "a", "content": content}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    return shop


def run(shop: Shop, test: Callable[[httpx.AsyncClient], Awaitable[None]], **options: Any) -> None:
    app = create_app(shop, clock=lambda: T0 + timedelta(hours=1), **options)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://shop.example") as client:
            await test(client)

    asyncio.run(go())


def clicked(shop: Shop) -> int:
    return int(shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM events WHERE event = 'message_clicked'").fetchone()[0])


def test_a_click_redirects_to_the_target_and_a_forged_one_is_404() -> None:
    shop = make_shop(("sms",), "세일 {{ link('https://shop.example/p/123') }}")
    token = shop.outbox()[0].chain[0]["text"].split("https://shop.example/r/")[1].split()[0]

    async def test(client: httpx.AsyncClient) -> None:
        answer = await client.get(f"/r/{token}")
        assert answer.status_code == 302
        assert answer.headers["location"] == "https://shop.example/p/123"
        forged = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert (await client.get(f"/r/{forged}")).status_code == 404
        assert (await client.get(f"/r/{token[:30]}")).status_code == 404
        assert (await client.get("/r/")).status_code == 404
        assert (await client.post(f"/r/{token}")).status_code == 405

    run(shop, test)
    assert clicked(shop) == 1


def test_a_target_with_korean_in_it_is_percent_encoded_in_the_location() -> None:
    shop = make_shop(("sms",), "세일 {{ link('https://shop.example/기획전?q=겨울') }}")
    token = shop.outbox()[0].chain[0]["text"].split("https://shop.example/r/")[1].split()[0]

    async def test(client: httpx.AsyncClient) -> None:
        answer = await client.get(f"/r/{token}")
        assert answer.status_code == 302
        assert answer.headers["location"] == "https://shop.example/%EA%B8%B0%ED%9A%8D%EC%A0%84?q=%EA%B2%A8%EC%9A%B8"

    run(shop, test)


def test_a_mounted_app_reads_paths_below_its_root() -> None:
    shop = make_shop(("sms",), "세일 {{ link('https://shop.example/p/123') }}")
    token = shop.outbox()[0].chain[0]["text"].split("https://shop.example/r/")[1].split()[0]
    app = create_app(shop, clock=lambda: T0)

    async def go() -> int:
        transport = httpx.ASGITransport(app=app, root_path="/t")
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as client:
            return (await client.get(f"/t/r/{token}")).status_code

    assert asyncio.run(go()) == 302


def test_a_solapi_delivery_report_updates_the_ledger_only_with_the_secret() -> None:
    shop = make_shop(("sms",), "겨울 세일")
    report = asyncio.run(Dispatcher(shop, {"sms": ConsoleChannel(write=lambda _: None)}, clock=lambda: T0).run())
    assert report.outcomes == {"sent": 1}
    row = shop.source.campaign_store().sends()[0]
    body = [{"eventDataId": "e1", "retryCount": 0, "data": {
        "messageId": row.provider_id, "statusCode": "4000", "statusMessage": "정상 수신",
        "dateReported": "2026-11-25T01:00:05Z", "customFields": {"shopcrmKey": row.key}}}]

    async def test(client: httpx.AsyncClient) -> None:
        assert (await client.post("/hooks/solapi/wrong-secret-0123456789", json=body)).status_code == 404
        assert shop.source.campaign_store().sends()[0].state == "sent"
        answer = await client.post(f"/hooks/solapi/{HOOK_SECRET}", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"reports": 1, "changed": {"delivered": 1}}
        again = await client.post(f"/hooks/solapi/{HOOK_SECRET}", json=body)  # providers resend: nothing changes
        assert again.json() == {"reports": 1, "changed": {}}
        assert (await client.post(f"/hooks/solapi/{HOOK_SECRET}", content=b"{not json")).status_code == 400

    run(shop, test, solapi_secret=HOOK_SECRET)
    assert shop.source.campaign_store().sends()[0].state == "delivered"

    async def without(client: httpx.AsyncClient) -> None:  # no secret configured: no webhook at all
        assert (await client.post(f"/hooks/solapi/{HOOK_SECRET}", json=body)).status_code == 404

    run(shop, without)
    with pytest.raises(ValueError, match="16"):
        create_app(shop, solapi_secret="short")


def test_one_click_unsubscribe_is_a_post_and_a_get_never_unsubscribes() -> None:
    shop = make_shop(("email",), "겨울 세일", subject="세일")
    headers = dict(shop.outbox()[0].chain[0]["headers"])
    url = headers["List-Unsubscribe"].strip("<>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = url.removeprefix("https://shop.example")
    store = shop.source.campaign_store()

    async def test(client: httpx.AsyncClient) -> None:
        page = await client.get(path)
        assert page.status_code == 200
        assert "method=post" in page.text
        assert store.opt_outs() == {}  # RFC 8058: a GET (a mail scanner) does not unsubscribe
        assert (await client.post(path, content=b"something=else")).status_code == 400
        assert (await client.post(path, files={"List-Unsubscribe": (None, "Other")})).status_code == 400
        assert store.opt_outs() == {}
        forged = path[:-1] + ("A" if path[-1] != "A" else "B")
        assert (await client.post(forged, data={"List-Unsubscribe": "One-Click"})).status_code == 404
        assert store.opt_outs() == {}
        first = await client.post(path, content=b"List-Unsubscribe=One-Click",
                                  headers={"content-type": "application/x-www-form-urlencoded"})
        assert first.status_code == 200
        assert store.opt_outs() == {"c0": {"email": T0 + timedelta(hours=1)}}
        # RFC 8058 senders SHOULD post multipart/form-data
        second = await client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
        assert second.status_code == 200
        assert set(store.opt_outs()) == {"c0"}
        assert set(store.opt_outs()["c0"]) == {"email"}

    run(shop, test)


def test_lifespan_and_unknown_paths() -> None:
    shop = make_shop(("sms",), "겨울 세일")
    app = create_app(shop)
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    async def test(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/u/short")).status_code == 404
        too_big = await client.post("/u/" + "A" * 44, content=b"x" * 20_000)
        assert too_big.status_code == 413
        assert "16,384 bytes" in too_big.text

    run(shop, test)
