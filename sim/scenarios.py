"""The built-in fault scenarios, as data: when each starts (simulated seconds after the
demo starts), what it does, and what a learner should look for. `ombre demo` runs them;
docs/training/ has an exercise per scenario.

Faults of the machines last simulated time. Faults of the network (broker outage, OPC
UA server restart) last wall-clock seconds whatever the speed, because reconnecting runs
on the wall clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["breakdown", "slowdown", "drift", "broker-outage", "opcua-restart",
                 "counter-reset", "bad-payloads"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: Action
    machine: str
    at_s: float  # simulated seconds after the demo starts
    amount: float  # breakdown/slowdown/drift: simulated seconds it lasts; network
    # faults: wall-clock seconds; bad-payloads: how many payloads
    factor: float  # slowdown: cycle time factor; drift: degrees per hour; else unused
    look_for: tuple[str, str]  # (English, French): what to watch in the dashboard


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("breakdown", "cnc-1", at_s=2400, amount=1200, factor=0, look_for=(
        "cnc-1 turns red (breakdown) for about 20 simulated minutes: its availability "
        "drops, and a stop without a reason appears in its downtime list.",
        "cnc-1 passe au rouge (panne) pendant environ 20 minutes simulées : sa "
        "disponibilité baisse et un arrêt sans motif apparaît dans sa liste d'arrêts.")),
    Scenario("slowdown", "press-1", at_s=1200, amount=3600, factor=1.15, look_for=(
        "press-1 cycles 15% slower for an hour: its performance drops, its availability "
        "does not.",
        "press-1 tourne 15 % moins vite pendant une heure : sa performance baisse, pas sa "
        "disponibilité.")),
    Scenario("drift", "cnc-1", at_s=7200, amount=3 * 3600, factor=3.0, look_for=(
        "After 2 simulated hours (the detector learns its baseline first), cnc-1's spindle "
        "temperature creeps up by 3 °C an hour: one drift alert opens on "
        "cnc-1/spindle_temp long before a hard limit would trip.",
        "Après 2 heures simulées (le détecteur apprend d'abord sa référence), la "
        "température de broche de cnc-1 monte de 3 °C par heure : une alerte de dérive "
        "s'ouvre sur cnc-1/spindle_temp bien avant un seuil d'alarme.")),
    Scenario("broker-outage", "press-1", at_s=600, amount=60, factor=0, look_for=(
        "The MQTT broker is unreachable for 60 s: press-1 and pack-1 fall silent, then "
        "everything they sent meanwhile arrives and their timelines have no hole.",
        "Le broker MQTT est injoignable pendant 60 s : press-1 et pack-1 se taisent, puis "
        "tout ce qu'ils ont envoyé entre-temps arrive et leur historique n'a pas de trou.")),
    Scenario("opcua-restart", "cnc-1", at_s=600, amount=10, factor=0, look_for=(
        "cnc-1's OPC UA server restarts (10 s down): the gateway reconnects by itself and "
        "records the gap as a data-quality event.",
        "Le serveur OPC UA de cnc-1 redémarre (10 s d'arrêt) : la passerelle se reconnecte "
        "seule et enregistre le trou comme un événement de qualité des données.")),
    Scenario("counter-reset", "pack-1", at_s=900, amount=0, factor=0, look_for=(
        "pack-1's counters drop to 0 (a controller restart): the part count goes on "
        "without a negative or a huge jump.",
        "Les compteurs de pack-1 retombent à 0 (redémarrage de l'automate) : le comptage "
        "continue sans valeur négative ni saut énorme.")),
    Scenario("bad-payloads", "press-1", at_s=300, amount=40, factor=0, look_for=(
        "press-1's sensor box sends 40 malformed messages: each is quarantined with its "
        "reason and counted, and no good reading is lost.",
        "Le boîtier de capteurs de press-1 envoie 40 messages malformés : chacun est mis en "
        "quarantaine avec sa raison et compté, et aucune bonne mesure n'est perdue.")),
)}

# The malformed payloads of `bad-payloads`, sent in turn: each is one quarantine record.
BAD_PAYLOADS: tuple[bytes, ...] = (
    b'{"mould_temp": 64.9, "ts": ',  # cut off
    b"\xff\xfe not JSON",
    b'{"mould_temp": "hot"}',  # a word where a number belongs
    b"[1, 2, 3]",  # not an object
)
