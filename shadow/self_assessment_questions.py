"""The self-assessment: what the data cannot show, asked of an admin (README, "Maturity
assessment"). Each question belongs to one structural area and one stage of the acatech
Industrie 4.0 Maturity Index; only "yes" makes it hold. Organisational structure and
culture take their stage from these answers alone; resources and information systems
only at the stages their data cannot reach. The themes are the Industrie 4.h findings:
a tool that people do not own is not used. Edit the wording here, and only here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    area: str  # one of shadow.maturity.AREAS
    stage: int  # the stage this answer counts for, 1 to 6
    theme: str  # what it asks about
    en: str
    fr: str


QUESTIONS: tuple[Question, ...] = (
    Question("owner", "organisational_structure", 1, "who acts on the KPIs",
             "A named person is responsible for the machines' data and the digital tools.",
             "Une personne nommée est responsable des données des machines et des outils "
             "numériques."),
    Question("same_figures", "organisational_structure", 2, "who acts on the KPIs",
             "Production, maintenance and quality work from the same figures, not each from "
             "their own spreadsheet.",
             "Production, maintenance et qualité travaillent sur les mêmes chiffres, et non "
             "chacune sur son propre tableur."),
    Question("kpi_meeting", "organisational_structure", 3, "who acts on the KPIs",
             "The KPIs are reviewed at a set meeting, each shift or each day, by people who "
             "can act on them.",
             "Les indicateurs sont revus à une réunion fixe, à chaque poste ou chaque jour, "
             "par des personnes qui peuvent agir."),
    Question("act_within_shift", "organisational_structure", 4, "how fast",
             "A stop without a reason or a drift alert reaches a named person who acts on it "
             "within the shift.",
             "Un arrêt sans motif ou une alerte de dérive parvient à une personne nommée qui "
             "agit dans le poste."),
    Question("plan_from_alerts", "organisational_structure", 5, "how fast",
             "Maintenance and production plan their interventions together from the drift "
             "alerts, before the failure.",
             "Maintenance et production planifient ensemble leurs interventions à partir des "
             "alertes de dérive, avant la panne."),
    Question("why_explained", "culture", 1, "data shared with the floor",
             "Management explained to the teams why the machines are connected and what the "
             "data is for.",
             "La direction a expliqué aux équipes pourquoi les machines sont connectées et à "
             "quoi servent les données."),
    Question("trained", "culture", 2, "training",
             "Operators and maintenance staff were trained on the new tools (the dashboard, "
             "entering reasons).",
             "Opérateurs et techniciens de maintenance ont été formés aux nouveaux outils "
             "(le tableau de bord, la saisie des motifs)."),
    Question("shown_on_floor", "culture", 3, "data shared with the floor",
             "The figures are shown on the shop floor, where operators see them during the "
             "shift.",
             "Les chiffres sont affichés dans l'atelier, là où les opérateurs les voient "
             "pendant le poste."),
    Question("operators_chose", "culture", 3, "operators choose the indicators",
             "Operators took part in choosing the indicators they see.",
             "Les opérateurs ont participé au choix des indicateurs qu'ils voient."),
    Question("operators_explain", "culture", 4, "operators enter the reasons",
             "Operators enter downtime reasons and alert causes themselves, and see what is "
             "done with them.",
             "Les opérateurs saisissent eux-mêmes les motifs d'arrêt et les causes d'alerte, "
             "et voient ce qui en est fait."),
    Question("maintenance_reads_alerts", "resources", 5, "training",
             "Maintenance staff can read a drift alert and plan an intervention from it "
             "(trained, with time set aside).",
             "Les techniciens de maintenance savent lire une alerte de dérive et en tirer "
             "une intervention (formés, avec du temps prévu)."),
    Question("condition_based", "resources", 5, "how fast",
             "Spare parts and maintenance slots are planned from the machines' condition, "
             "not only from the calendar.",
             "Pièces de rechange et créneaux de maintenance sont planifiés selon l'état des "
             "machines, pas seulement selon le calendrier."),
    Question("self_adjusting", "resources", 6, "who acts on the KPIs",
             "Machines or cells adjust their own settings from the data, within limits "
             "people set.",
             "Les machines ou les îlots ajustent eux-mêmes leurs réglages d'après les "
             "données, dans des limites fixées par des personnes."),
    Question("automatic_orders", "information_systems", 6, "who acts on the KPIs",
             "Schedules or maintenance requests are created automatically from the "
             "shop-floor data, without re-typing.",
             "Plannings ou demandes de maintenance sont créés automatiquement à partir des "
             "données de l'atelier, sans ressaisie."),
    Question("decisions_logged", "information_systems", 6, "data shared with the floor",
             "Every automatic decision is logged, and a person can see and overrule it.",
             "Chaque décision automatique est tracée, et une personne peut la voir et la "
             "corriger."),
    Question("erp_replans", "information_systems", 6, "how fast",
             "The planning system reads production progress from the shop floor and "
             "replans by itself.",
             "Le système de planification lit l'avancement de la production dans l'atelier "
             "et replanifie de lui-même."),
)
