"""Workspaces in a real headless Chromium (issue 18): an owner makes a workspace, a task in
it and invites a colleague who has no account (the link signs them up into it as a viewer);
the viewer switches to it in the header and sees no create, upload or train button; made an
editor they get the upload card; removed, their pages are back in their own workspace.
Screenshots at 1280 and 390 px go to /work/notes/shots18/ (else test-artifacts/)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
NOTES = Path(os.environ.get("VIZE_SHOTS18", "/work/notes/shots18"))


def _shots(fallback: Path) -> Path:
    target = NOTES if NOTES.parent.is_dir() else fallback / "workspaces"
    target.mkdir(parents=True, exist_ok=True)
    return target


def shoot(page: Any, shots: Path, name: str) -> None:
    """The page at both widths (full page), back to the desktop width afterwards."""
    for label, size in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(shots / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_up(page: Any, base: str, username: str, url: str = "/signup") -> None:
    page.goto(url if url.startswith("http") else base + url)
    if page.get_by_label("Username").is_editable():
        page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(f"{username}-password")
    page.get_by_label("Repeat the password").fill(f"{username}-password")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/tasks")


def test_workspace_members_roles_and_switcher(
    live_server: str, chromium: Any, screenshots: Path
) -> None:
    shots, base = _shots(screenshots), live_server
    owner_ctx = chromium.new_context(viewport=DESKTOP)
    guest_ctx = chromium.new_context(viewport=DESKTOP)
    owner, guest = owner_ctx.new_page(), guest_ctx.new_page()
    errors: list[str] = []
    for page in (owner, guest):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_up(owner, base, "olga")
        # A new workspace from the members page: created and switched to.
        owner.goto(base + "/workspace")
        owner.get_by_label("Name", exact=True).fill("Lab")
        owner.get_by_role("button", name="Create and switch").click()
        owner.wait_for_url("**/tasks")
        assert "Lab (owner)" in owner.inner_text("#ws-select option:checked")
        owner.get_by_label("Name", exact=True).fill("Shared birds")
        owner.get_by_role("button", name="Create task").click()
        owner.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
        task_path = owner.url.removeprefix(base)
        owner.get_by_label("New label").fill("robin")  # with a label the upload card shows
        owner.get_by_role("button", name="Add", exact=True).click()
        owner.wait_for_selector(".label-name:text-is('robin')")
        assert owner.locator("#upload-card").count() == 1
        # Invite someone without an account, as a viewer: a sign-up link.
        owner.goto(base + "/workspace")
        owner.get_by_label("Username or email").fill("viktor")
        owner.get_by_label("Role", exact=True).select_option("viewer")
        owner.get_by_role("button", name="Invite").click()
        link = owner.input_value("#invite-link")
        assert "/signup?invite=" in link
        shoot(owner, shots, "members-invitation")

        sign_up(guest, base, "viktor", link)
        assert "Shared birds" not in guest.inner_text("main")  # own default workspace first
        with guest.expect_navigation():  # the switcher submits itself
            guest.select_option("#ws-select", label="Lab (viewer)")
        assert "Shared birds" in guest.inner_text("main")
        assert guest.locator("#new-task").count() == 0  # no create form for a viewer
        shoot(guest, shots, "viewer-tasks")
        guest.goto(base + task_path)
        assert guest.locator("#upload-card").count() == 0
        shoot(guest, shots, "viewer-task")
        guest.goto(base + task_path + "/training")
        assert guest.locator("#train-btn").count() == 0
        # The API refuses the viewer too (the page's own cookie-authenticated call).
        status = guest.evaluate(
            """async (url) => (await fetch(url, {method: 'POST', headers: {'X-CSRFToken':
            document.querySelector('meta[name=csrf-token]').content}})).status""",
            f"/v2/task/{task_path.rsplit('/', 1)[1]}/train/",
        )
        assert status == 403

        # Promoted to editor: the upload card appears.
        owner.goto(base + "/workspace")
        row = owner.locator("tr[data-username='viktor']")
        row.locator("select").select_option("editor")
        row.get_by_role("button", name="Change").click()
        owner.wait_for_selector(".alert-success")
        shoot(owner, shots, "members")
        guest.goto(base + task_path)
        assert guest.locator("#upload-card").count() == 1

        # Removed: the next page is the guest's own workspace again.
        owner.once("dialog", lambda dialog: dialog.accept())
        owner.locator("tr[data-username='viktor']").get_by_role("button", name="Remove").click()
        owner.wait_for_selector(".alert-success")
        assert owner.locator("tr[data-username='viktor']").count() == 0
        guest.goto(base + "/tasks")
        assert "Shared birds" not in guest.inner_text("main")
        assert "Default (owner)" in guest.inner_text("#ws-select option:checked")
        guest.goto(base + task_path)
        assert "Not found" in guest.inner_text("main")
        assert errors == []
    finally:
        owner_ctx.close()
        guest_ctx.close()
