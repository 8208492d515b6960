"""The MES/ERP tables (SQLAlchemy Core), as shared/DESIGN.md lists them. Times are int64
nanoseconds since the epoch, UTC (`*_ns`), so that SQLite and PostgreSQL compute
durations the same way; the views give minutes. The schema is created and changed only
by the Alembic migrations in shadow/migrations, which copy these definitions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
    false,
    table,
)

metadata = MetaData()

TEXT = r"^[^\x00]*$"  # the text a column can hold: PostgreSQL refuses NUL characters
ALL_MACHINES = "*"  # planned_stop.machine_id for a stop of every machine

equipment = Table(
    "equipment", metadata,
    Column("id", String(400), primary_key=True),  # machine id; "site/area/line" paths above
    Column("parent_id", String(400), nullable=True),
    Column("level", String(16), nullable=False),  # site, area, line, machine (work cell)
    Column("name", String(200), nullable=True),
    Column("type", String(200), nullable=True),
    Column("connection", Text, nullable=True),  # the sources that feed it
    Column("calendar", String(64), nullable=False, server_default="default"),
)

shift = Table(
    "shift", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("day", String(10), nullable=False),  # local date the shift starts on
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    UniqueConstraint("start_ns", "name", name="uq_shift_start_name"),
)

planned_stop = Table(
    "planned_stop", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(400), nullable=False),  # ALL_MACHINES for every machine
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("reason", String(200), nullable=False),
    UniqueConstraint("machine_id", "start_ns", "reason", name="uq_planned_stop"),
)

reason_code = Table(
    "reason_code", metadata,
    Column("code", String(128), primary_key=True),
    Column("text", String(400), nullable=False),
    Column("category", String(8), nullable=False),
    Column("failure", Boolean, nullable=False),
)

production_order = Table(
    "production_order", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_key", String(300), nullable=False, unique=True),  # order_no[/operation]
    Column("order_no", String(200), nullable=False),
    Column("operation", String(64), nullable=False, server_default=""),
    Column("material", String(200), nullable=True),
    Column("planned_qty", Integer, nullable=False),
    Column("pru_s", Float, nullable=False),  # planned run time per unit, seconds
    Column("planned_scrap_qty", Integer, nullable=False, server_default="0"),
    Column("machine_id", String(400), nullable=True),  # the planned work unit
    # planned, running, completed (the job signal, a person or the planned quantity
    # ended its last job), closed (Ombre ended it: see end_reason)
    Column("status", String(16), nullable=False, server_default="planned"),
    Column("end_ns", BigInteger, nullable=True),  # when it was completed or closed
    Column("ended_by", String(16), nullable=True),  # signal, command, quantity, restart
    Column("end_reason", String(200), nullable=True),
)

job = Table(
    "job", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(400), nullable=False),
    Column("job_key", String(300), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # ISA-95: Running, Completed, Aborted
    Column("ended_by", String(16), nullable=True),  # signal, command, quantity, restart
    Column("end_reason", String(200), nullable=True),
    UniqueConstraint("machine_id", "start_ns", name="uq_job_machine_start"),
)

job_command = Table(  # jobs started or completed through the API, for the shadow to apply
    "job_command", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(400), nullable=False),
    Column("action", String(16), nullable=False),  # start, complete
    Column("job_key", String(300), nullable=True),  # start: the job; complete: the one ended
    Column("requested_ns", BigInteger, nullable=False),
    Column("requested_by", String(128), nullable=False),  # the token's name
    Column("applied_ns", BigInteger, nullable=True),  # NULL: not applied yet; else data time
    Column("result", String(200), nullable=True),  # what the shadow did
    Index("ix_job_command_pending", "applied_ns"),
)

state_interval = Table(
    "state_interval", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(400), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("raw_state", String(200), nullable=False),
    Column("category", String(8), nullable=True),  # NULL: unclassified
    Column("failure", Boolean, nullable=False),
    Column("job_key", String(300), nullable=True),
    Column("reason_code", String(128), ForeignKey("reason_code.code"), nullable=True),
    Column("reason_raw", String(200), nullable=True),  # the stop reason the machine gave
    Column("reason_source", String(16), nullable=True),  # of reason_code: machine, operator
    UniqueConstraint("machine_id", "start_ns", name="uq_state_interval_machine_start"),
    Index("ix_state_interval_machine_end", "machine_id", "end_ns"),
)

production_count = Table(
    "production_count", metadata,
    Column("machine_id", String(400), primary_key=True),
    Column("bucket_ns", BigInteger, primary_key=True),  # start of the minute
    Column("job_key", String(300), primary_key=True),  # "" when no job was loaded
    Column("pq", Integer, nullable=False),
    Column("gq", Integer, nullable=False),
    Column("sq", Integer, nullable=False),
    Column("rq", Integer, nullable=False),
)

machine_state = Table(  # the live model's snapshot, written with the rows it produced
    "machine_state", metadata,
    Column("machine_id", String(400), primary_key=True),
    Column("snapshot", Text, nullable=False),  # JSON, see shadow.model.Machine.snapshot
)

gateway_run = Table(  # the data time each run of the shadow covered: no data outside them
    "gateway_run", metadata,
    Column("started_ns", BigInteger, primary_key=True, autoincrement=False),  # wall clock at start
    Column("start_ns", BigInteger, nullable=False),  # its oldest reading (data time)
    Column("end_ns", BigInteger, nullable=False),  # its newest reading: the heartbeat
    Column("readings_lost", BigInteger, nullable=True),  # dropped by its queue and outbox
)

# reading_count and model_age keep this many days before the newest hour of data time
# counted: a month's assessment and a few days more (about 50,000 ages per machine).
EVIDENCE_DAYS = 35

reading_count = Table(  # readings (and events) the shadow received, per signal and hour, once
    "reading_count", metadata,
    Column("machine_id", String(400), primary_key=True),
    Column("signal", String(128), primary_key=True),
    Column("hour_ns", BigInteger, primary_key=True),  # the hour's start, in data time
    Column("readings", BigInteger, nullable=False),
    Index("ix_reading_count_hour", "hour_ns"),
)

model_age = Table(  # each machine's live-model age, sampled once a minute of data time
    "model_age", metadata,
    Column("machine_id", String(400), primary_key=True),
    Column("minute_ns", BigInteger, primary_key=True),  # the sample's data time
    Column("age_s", Float, nullable=False),  # the model's clock minus its last reading
    Index("ix_model_age_minute", "minute_ns"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ns", BigInteger, nullable=False),
    Column("machine_id", String(400), nullable=False),
    Column("signal", String(128), nullable=False),
    Column("value", Float, nullable=True),
    Column("reason", Text, nullable=False),
    UniqueConstraint("machine_id", "signal", "ts_ns", name="uq_quarantine_reading"),
)

shift_kpi = Table(  # KPIs of each finished shift, as shadow/kpi.py computed them
    "shift_kpi", metadata,
    Column("shift_id", Integer, ForeignKey("shift.id"), primary_key=True),
    Column("machine_id", String(400), primary_key=True),
    Column("result", Text, nullable=False),  # JSON: KpiResult.to_dict()
    *(Column(name, Float, nullable=True) for name in (
        "availability", "effectiveness", "quality_ratio", "oee", "unclassified_share",
        "pbt_min", "apt_min", "pq", "gq", "sq", "rq")),
)


drift_alert = Table(
    "drift_alert", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(400), nullable=False),
    Column("signal", String(128), nullable=False),
    Column("detector", String(16), nullable=False),  # cusum, ewma, shewhart
    Column("params", Text, nullable=False),  # JSON: the detector's parameters and baseline
    Column("start_ns", BigInteger, nullable=False),  # estimated start of the shift
    Column("detected_ns", BigInteger, nullable=False),
    Column("last_alarm_ns", BigInteger, nullable=False),  # latest alarm of the episode
    Column("in_control_ns", BigInteger, nullable=False),  # closes after this without alarm
    Column("end_ns", BigInteger, nullable=True),  # back in control (or closed by a person)
    Column("direction", String(4), nullable=False),  # up, down
    Column("shift_sigma", Float, nullable=False),  # estimated shift, in baseline sigmas
    Column("shift_value", Float, nullable=False),  # the same, in the signal's unit
    Column("unit", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # open, acknowledged, closed
    Column("acknowledged_by", String(128), nullable=True),
    Column("acknowledged_ns", BigInteger, nullable=True),
    Column("closed_by", String(128), nullable=True),  # a person, or "auto"
    Column("cause", String(128), nullable=True),
    Column("note", Text, nullable=True),
    UniqueConstraint("machine_id", "signal", "detector", "detected_ns", name="uq_drift_alert"),
    Index("ix_drift_alert_status", "status"),
)

shadow_state = Table(  # state that is not one machine's, e.g. the drift detectors
    "shadow_state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

fleet_lease = Table(  # which central process keeps each site's machines (shadow/fleet.py)
    "fleet_lease", metadata,
    Column("site_id", String(128), primary_key=True),  # a site id (at most 128)
    Column("member", String(128), nullable=False),  # the holder's `fleet.member`
    Column("instance", String(32), nullable=False),  # the holder's process, a random id
    Column("epoch", BigInteger, nullable=False),  # +1 at every taking: the writes' fence
    Column("expires_ns", BigInteger, nullable=False),  # wall clock; 0: given back
)

fleet_member = Table(  # the central processes alive: each holds its share of the sites
    "fleet_member", metadata,
    Column("member", String(128), primary_key=True),
    Column("instance", String(32), nullable=False),
    Column("seen_ns", BigInteger, nullable=False),
)

api_token = Table(  # API tokens: only a hash of each secret is kept
    "api_token", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),  # viewer, operator, admin
    Column("secret_sha256", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("revoked_ns", BigInteger, nullable=True),
    # a display's viewer token: a demo's restart keeps it (api/tokens.py)
    Column("kiosk", Boolean, nullable=False, server_default=false()),
    Column("site", String(128), nullable=True),  # the one site it sees; null: the plant
)

audit_log = Table(  # every operator and admin action (shadow/audit.py); never updated
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ns", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),  # token:<id>:<name>, or cli:<user>
    Column("action", String(32), nullable=False),  # one of shadow.audit.ACTIONS
    Column("target", String(400), nullable=False),  # what it acted on
    Column("details", Text, nullable=False),  # JSON object
    Index("ix_audit_log_ts", "ts_ns"),
)

maturity_assessment = Table(  # shadow/maturity.py: the latest assessment ending on each day
    "maturity_assessment", metadata,
    Column("day", String(10), primary_key=True),  # UTC date of the window's end
    Column("from_ns", BigInteger, nullable=False),
    Column("to_ns", BigInteger, nullable=False),
    Column("assessed_ns", BigInteger, nullable=False),  # wall clock when it was made
    Column("stage", Integer, nullable=False),  # the plant's overall stage, 0 to 6
    Column("result", Text, nullable=False),  # JSON: Assessment.to_dict()
)

self_assessment_answer = Table(  # shadow/self_assessment.py: every answer given; never updated
    "self_assessment_answer", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("question", String(40), nullable=False),  # a key of self_assessment_questions
    Column("answer", String(10), nullable=False),  # yes, partly, no
    Column("answered_by", String(200), nullable=False),  # token:<id>:<name>, or cli:<user>
    Column("answered_ns", BigInteger, nullable=False),
    Index("ix_self_assessment_answer_ts", "answered_ns"),
)

shift_note = Table(  # what an operator wrote about a line's shift, for its shift report
    "shift_note", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("line_id", String(400), nullable=False),
    Column("shift_start_ns", BigInteger, nullable=False),  # with the line: the key
    Column("shift_name", String(128), nullable=False),
    Column("written_ns", BigInteger, nullable=False),
    Column("author", String(200), nullable=False),  # token:<id>:<name>, or cli:<user>
    Column("text", Text, nullable=False),
    Index("ix_shift_note_line_shift", "line_id", "shift_start_ns"),
)

# The views the migrations create, for reading (not part of `metadata`).
order_confirmation = table(
    "order_confirmation",
    *(column(name) for name in ("order_no", "operation", "material", "planned_qty", "status",
                                "good", "scrap", "rework", "setup_min", "run_min",
                                "delay_min")),
)

# Notifications (shadow/notifier.py): the durable queue of messages, one row per message
# and channel, kept after delivery (at most notifications.queue.max_history) for the
# dashboard; and the incidents open or with news not yet sent.
notification = Table(
    "notification", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),  # the same for every channel
    Column("channel", String(16), nullable=False),  # email, webhook
    Column("created_ns", BigInteger, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON, what a webhook receives
    Column("status", String(16), nullable=False),  # pending, sent, failed, dropped
    Column("attempts", Integer, nullable=False),
    Column("next_ns", BigInteger, nullable=False),  # a pending message's next attempt
    Column("last_error", Text, nullable=True),
    Column("done_ns", BigInteger, nullable=True),  # when sent, failed for good or dropped
    Index("ix_notification_status_next", "status", "next_ns"),
)

notification_incident = Table(
    "notification_incident", metadata,
    Column("rule", String(128), primary_key=True),
    Column("subject", String(400), primary_key=True),
    Column("opened_ns", BigInteger, nullable=False),
    Column("cleared_ns", BigInteger, nullable=True),
    Column("openings", Integer, nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Column("notified", String(16), nullable=True),  # open, cleared: what was last sent
    Column("changed_ns", BigInteger, nullable=True),  # news not yet sent since then
)
