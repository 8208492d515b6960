"""The tokens `ombre demo` prints: an admin token renewed at each run (the previous
run's revoked), and the wall display's kiosk token, kept from run to run so that a wall
screen left open goes on working."""

from __future__ import annotations

import stat
from pathlib import Path

from api.tokens import Role, check_token, list_tokens, revoke_token
from ombre.demo import KIOSK_FILE, _admin_token, _kiosk_token
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import ShadowStore


def test_a_demo_restart_revokes_its_admin_token_but_keeps_the_kiosk_token(
        tmp_path: Path) -> None:
    store = ShadowStore(open_engine(database_url(None, tmp_path)))
    try:
        upgrade(store.engine)
        first_admin, first_kiosk = _admin_token(store), _kiosk_token(store, tmp_path)
        second_admin, second_kiosk = _admin_token(store), _kiosk_token(store, tmp_path)
        assert check_token(store.engine, first_admin) is None  # revoked by the restart
        assert second_kiosk == first_kiosk
        kiosk = check_token(store.engine, second_kiosk)
        assert kiosk is not None
        assert (kiosk.role, kiosk.kiosk) == (Role.VIEWER, True)
        admin = check_token(store.engine, second_admin)
        assert admin is not None
        assert (admin.role, admin.kiosk) == (Role.ADMIN, False)
        path = tmp_path / KIOSK_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # Revoked by hand (`ombre token revoke`): the next run makes a new one.
        revoke_token(store.engine, kiosk.id, "test")
        third_kiosk = _kiosk_token(store, tmp_path)
        assert third_kiosk != first_kiosk
        assert path.read_text().strip() == third_kiosk
        assert [(t.name, t.kiosk, t.revoked_ns is None) for t in list_tokens(store.engine)] == [
            ("demo", False, False), ("demo wall", True, False), ("demo", False, True),
            ("demo wall", True, True)]
    finally:
        store.engine.dispose()
