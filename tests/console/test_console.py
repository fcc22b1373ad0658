"""The operator console in a real headless Chromium (Debian's, through selenium), against real
Kafka and PostgreSQL: signing in with an admin token, the overview's numbers, a saga's timeline,
a dead letter re-driven after a confirm page, and what is refused (no session, a forged or a
customer's token, a re-drive without its CSRF token). Each page is kept as a screenshot in
`.run/console-screenshots/`."""

from __future__ import annotations

import re

import httpx
from aiokafka.structs import ConsumerRecord
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.console.browser import shoot, wait_for, wait_for_url
from tests.console.conftest import LAG, World
from tests.support import eventually
from tests.support.processes import read_records

COOKIE = "leadline_console"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(driver: webdriver.Chrome, token: str) -> None:
    """Submit `token` on the sign-in form (shown in place of any page without a session)."""
    field = wait_for(driver, "input#token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()


def signed_in(driver: webdriver.Chrome, world: World) -> None:
    """A fresh session: no cookie from an earlier test, then the admin token."""
    driver.get(f"{world.url}/login")
    driver.delete_all_cookies()
    driver.get(f"{world.url}/")
    sign_in(driver, world.admin_token)
    wait_for(driver, "h1", text="Overview")


def rows(driver: webdriver.Chrome, table: str) -> list[list[str]]:
    return [
        [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, f"{table} tbody tr")
    ]


async def test_without_an_admin_session_every_page_asks_for_a_token_and_others_are_refused(
    browser: webdriver.Chrome, world: World
) -> None:
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as http:
        anonymous = await http.get("/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert 'name="token"' in anonymous.text
        forged = await http.get("/sagas", headers=bearer(world.forged_token))
        assert forged.status_code == 401
        customer = await http.get("/dead-letters", headers=bearer(world.customer_token))
        assert customer.status_code == 403
        assert "lacks the admin scope" in customer.text
        admin = await http.get("/sagas", headers=bearer(world.admin_token))
        assert admin.status_code == 200
        assert world.sagas.paying[0] in admin.text
        assert "script" not in admin.headers["content-security-policy"]

    browser.get(f"{world.url}/login")
    browser.delete_all_cookies()
    browser.get(f"{world.url}/sagas?state=paying")
    assert wait_for(browser, "h1").text == "Sign in"
    shoot(browser, "01-sign-in")

    sign_in(browser, world.forged_token)
    wait_for(browser, ".problem", text="That token was refused")
    assert browser.get_cookie(COOKIE) is None
    shoot(browser, "02-sign-in-refused")

    sign_in(browser, world.admin_token)
    wait_for(browser, "h1", text="Sagas: paying")  # back to the page it was asked for
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

    browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    wait_for(browser, "h1", text="Sign in")
    assert browser.get_cookie(COOKIE) is None


async def test_the_overview_shows_sagas_by_state_lag_per_group_and_outbox_backlog(
    browser: webdriver.Chrome, world: World
) -> None:
    signed_in(browser, world)

    tiles = {
        li.get_attribute("data-state"): li.find_element(By.CSS_SELECTOR, ".n").text
        for li in browser.find_elements(By.CSS_SELECTOR, "#sagas .counts li")
    }
    assert tiles == {"all": "4", "paying": "2", "reserving": "1", "rejecting": "1"}

    async def kafka_panes() -> tuple[list[list[str]], list[list[str]], str]:
        # on a broker other tests share, a group of theirs mid-rebalance can make Kafka refuse
        # the offsets request; the console then says so in the pane, and a reload asks again
        browser.refresh()
        wait_for(browser, "h1", text="Overview")
        found = (rows(browser, "#lag-table"), rows(browser, "#dead-letters table"))
        return (*found, browser.find_element(By.ID, "lag").text)

    await eventually(
        kafka_panes,
        lambda found: (
            found[:2]
            == (
                [[world.group, str(LAG), f"warehouse.events {LAG}"]],
                [["inventory.commands.dlq", "1"]],
            )
        ),
        timeout=60,
        what="the group's lag and the dead letters on the overview",
    )

    outbox = {r[0]: r for r in rows(browser, "#outbox-table")}
    pending, parked, note = 2, 4, 5
    assert (outbox["checkout"][pending], outbox["checkout"][parked]) == ("3", "1")
    assert outbox["checkout"][3].endswith("ago")  # the oldest pending row's age
    assert (outbox["inventory"][pending], outbox["inventory"][parked]) == ("0", "2")
    assert "PostgreSQL unreachable" in outbox["receipts"][note]
    assert "does not exist" in outbox["receipts"][note]
    assert outbox["orchestrator"][note] == "no outbox in this database"
    assert "***@" in outbox["checkout"][1]  # the database URL without its password
    shoot(browser, "03-overview")


async def test_sagas_by_state_lead_to_one_sagas_timeline(
    browser: webdriver.Chrome, world: World
) -> None:
    signed_in(browser, world)
    browser.find_element(By.CSS_SELECTOR, "#sagas li[data-state=paying] a").click()
    wait_for(browser, "h1", text="Sagas: paying")
    assert sorted(r[0] for r in rows(browser, "#saga-table")) == world.sagas.paying
    shoot(browser, "04-sagas-paying")

    order = world.sagas.paying[0]
    browser.find_element(By.LINK_TEXT, order).click()
    wait_for(browser, "h1", text=f"Saga of order {order}")
    timeline = rows(browser, "#timeline")
    message, status, sent = 2, 4, 5
    assert [(r[message], r[status]) for r in timeline] == [
        ("OrderPlaced", "reserving"),
        ("StockReserved", "paying"),
    ]
    assert timeline[0][sent] == "reserve: ReserveStock → inventory.commands"
    assert timeline[1][sent] == "pay: RequestPayment → payments.requests"
    assert timeline[1][1] == "+1.000 s"
    shoot(browser, "05-saga-timeline")

    browser.get(f"{world.url}/sagas/ord-never-placed")
    wait_for(browser, ".problem", text="no saga for order 'ord-never-placed'")


async def test_a_dead_letter_shows_its_reason_and_is_redriven_after_a_confirm_page(
    browser: webdriver.Chrome, world: World
) -> None:
    source = world.prefix + "inventory.commands"
    event_id = str(world.poison.envelope.event_id)

    async def on_source() -> list[ConsumerRecord[bytes, bytes]]:
        found = await read_records(world.bootstrap, source)
        return [r for r in found if dict(r.headers).get("event_id") == event_id.encode()]

    signed_in(browser, world)
    browser.find_element(By.LINK_TEXT, "Dead letters").click()
    Select(wait_for(browser, "select[name=topic]")).select_by_value("inventory.commands.dlq")
    Select(browser.find_element(By.NAME, "reason")).select_by_value("unknown-type")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_for_url(browser, "reason=unknown-type")
    wait_for(browser, "#letter-table a", text=world.poison.letter_id)
    [listed] = rows(browser, "#letter-table")
    assert listed[2:6] == ["unknown-type", "inventory", "inventory.commands:0:0", "ReserveStok"]
    shoot(browser, "06-dead-letters")

    browser.find_element(By.LINK_TEXT, world.poison.letter_id).click()
    wait_for(browser, "h1", text=f"Dead letter {world.poison.letter_id}")
    assert "unknown-type" in browser.find_element(By.CSS_SELECTOR, "dl.fields").text
    assert "no handler for type 'ReserveStok'" in browser.page_source
    shoot(browser, "07-dead-letter")

    before = len(await on_source())
    browser.find_element(By.XPATH, "//button[normalize-space()='Re-drive…']").click()
    wait_for(browser, "h2", text="Re-drive this dead letter?")
    assert len(await on_source()) == before  # asking re-produces nothing
    shoot(browser, "08-redrive-confirm")

    browser.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(browser, ".notice", text="re-produced to inventory.commands")
    shoot(browser, "09-redriven")
    found = await eventually(
        on_source, lambda rs: len(rs) == before + 1, timeout=30, what="the re-driven record"
    )
    original, again = found[0], found[-1]
    assert (again.key, again.value, again.headers) == (
        original.key,
        original.value,
        original.headers,
    )

    browser.get(f"{world.url}/dead-letters?reason=schema-violation")
    wait_for(browser, ".empty", text="No dead letter matches.")


async def test_a_redrive_without_the_sessions_csrf_token_is_refused(world: World) -> None:
    source = world.prefix + "inventory.commands"
    before = len(await read_records(world.bootstrap, source))
    redrive = f"/dead-letters/{world.poison.letter_id}/redrive"
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as http:
        signed = await http.post("/login", data={"token": world.admin_token, "next": "/"})
        assert signed.status_code == 303
        assert {"httponly", "samesite=strict"} <= {
            part.strip() for part in signed.headers["set-cookie"].lower().split(";")
        }
        confirm = await http.get(redrive)
        assert confirm.status_code == 200
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', confirm.text)
        assert match is not None
        for form, headers in [
            ({}, {}),
            ({"csrf": "0" * 64}, {}),
            ({"csrf": match[1]}, {"Origin": "https://elsewhere.example"}),
        ]:
            refused = await http.post(redrive, data=form, headers=headers)
            assert refused.status_code == 403, (form, headers)
            assert "Refused" in refused.text

        http.cookies.clear()
        # a script's bearer token is no exemption
        scripted = await http.post(redrive, data={}, headers=bearer(world.admin_token))
        assert scripted.status_code == 403
        assert "no valid CSRF token" in scripted.text
        anonymous = await http.post(redrive, data={"csrf": match[1]})
        assert anonymous.status_code == 401
    assert len(await read_records(world.bootstrap, source)) == before
