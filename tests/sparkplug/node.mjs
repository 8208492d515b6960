// A Sparkplug B peer written apart from Ombre's encoder, for the interop tests
// (tests/connectors/test_sparkplug_interop.py): protobufjs loads the schema
// connectors/sparkplug_b.proto itself, MQTT.js speaks to the broker.
//
//   node node.mjs host PORT            a host application: prints every Sparkplug message
//                                      it receives as one JSON line; stdin lines
//                                      `state HOST online|offline [AGE_MS]` (retained
//                                      STATE, its timestamp AGE_MS in the past) and
//                                      `rebirth GROUP NODE` (an NCMD) publish
//   node node.mjs edge PORT GROUP NODE DEVICE
//                                      an edge node with one device: NDEATH as its will,
//                                      NBIRTH and DBIRTH (temp Double alias 1, parts Int32
//                                      alias 2, state String alias 3), births again on an
//                                      NCMD Node Control/Rebirth; stdin lines
//                                      `data temp=21.5 parts=-3 state=RUNNING` (DDATA by
//                                      alias), `gap` (skips a seq), `ddeath`, `crash`
//                                      (drops the link: the broker sends the will)
//
// Every line it prints is JSON; {"event": "ready"} once connected (edge: born).
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import protobuf from "protobufjs";

const schema = fileURLToPath(new URL("../../connectors/sparkplug_b.proto", import.meta.url));
const root = await protobuf.load(schema);
const Payload = root.lookupType("org.eclipse.tahu.protobuf.Payload");
const DataType = root.lookupEnum("org.eclipse.tahu.protobuf.DataType").values;

const [mode, port, group, node, device] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const encode = (obj) => Payload.encode(Payload.fromObject(obj)).finish();
const decode = (bytes) => Payload.toObject(Payload.decode(bytes), {
  longs: Number, enums: Number, defaults: false, oneofs: true,
});
const lines = createInterface({ input: process.stdin });

if (mode === "host") {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    // a persistent session: what is published while the broker restarts is kept for it
    clientId: `interop-host-${process.pid}`, reconnectPeriod: 200, clean: false,
  });
  client.on("connect", () => {
    client.subscribe("spBv1.0/#", { qos: 1 }, () => say({ event: "ready" }));
  });
  client.on("message", (topic, bytes) => {
    if (topic.startsWith("spBv1.0/STATE/")) return;
    const payload = decode(bytes);
    say({
      topic, seq: payload.seq, timestamp: payload.timestamp,
      metrics: (payload.metrics || []).map((m) => ({
        name: m.name, alias: m.alias, timestamp: m.timestamp, datatype: m.datatype,
        is_null: m.isNull || false, is_historical: m.isHistorical || false,
        value: m.value === undefined ? null : m[m.value],
        ...quality(m),
      })),
    });
  });
  // the Quality property (OPC DA codes, Ignition's convention), printed only when present
  function quality(m) {
    const keys = (m.properties && m.properties.keys) || [];
    const i = keys.indexOf("Quality");
    return i < 0 ? {} : { quality: m.properties.values[i].intValue };
  }
  lines.on("line", (line) => {
    const [cmd, a, b, c] = line.trim().split(" ");
    if (cmd === "state") {
      const body = JSON.stringify({ online: b === "online", timestamp: Date.now() - (Number(c) || 0) });
      client.publish(`spBv1.0/STATE/${a}`, body, { qos: 1, retain: true },
        () => say({ event: "state", online: b === "online" }));
    } else if (cmd === "rebirth") {
      const body = encode({ timestamp: Date.now(), metrics: [
        { name: "Node Control/Rebirth", datatype: DataType.Boolean, booleanValue: true }] });
      client.publish(`spBv1.0/${a}/NCMD/${b}`, body, { qos: 0 }, () => say({ event: "sent" }));
    }
  });
} else if (mode === "edge") {
  let seq = 0;
  const bdSeq = 0;
  const base = `spBv1.0/${group}`;
  const death = encode({ timestamp: Date.now(), metrics: [
    { name: "bdSeq", datatype: DataType.UInt64, longValue: bdSeq }] });
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: `interop-edge-${node}`, reconnectPeriod: 0, clean: true,
    will: { topic: `${base}/NDEATH/${node}`, payload: Buffer.from(death), qos: 1 },
  });
  const send = (kind, dev, body) => {
    const topic = dev ? `${base}/${kind}/${node}/${dev}` : `${base}/${kind}/${node}`;
    client.publish(topic, Buffer.from(encode({ ...body, timestamp: Date.now(), seq })),
      { qos: 0 });
    seq = (seq + 1) % 256;
  };
  const metrics = {
    temp: { alias: 1, datatype: DataType.Double, field: "doubleValue", value: 20.0 },
    parts: { alias: 2, datatype: DataType.Int32, field: "intValue", value: 0 },
    state: { alias: 3, datatype: DataType.String, field: "stringValue", value: "IDLE" },
  };
  // Int32 travels in the uint32 int_value as two's complement
  const wire = (m, value) => (m.datatype === DataType.Int32 ? value >>> 0 : value);
  const birth = () => {
    seq = 0;
    send("NBIRTH", null, { metrics: [
      { name: "bdSeq", datatype: DataType.UInt64, longValue: bdSeq },
      { name: "Node Control/Rebirth", datatype: DataType.Boolean, booleanValue: false }] });
    send("DBIRTH", device, { metrics: Object.entries(metrics).map(([name, m]) => ({
      name, alias: m.alias, timestamp: Date.now(), datatype: m.datatype,
      [m.field]: wire(m, m.value) })) });
  };
  client.on("connect", () => {
    client.subscribe(`${base}/NCMD/${node}`, { qos: 0 }, () => {
      birth();
      say({ event: "ready" });
    });
  });
  client.on("message", (_topic, bytes) => {
    const command = decode(bytes);
    if ((command.metrics || []).some((m) => m.name === "Node Control/Rebirth" && m.booleanValue)) {
      birth();
      say({ event: "rebirth" });
    }
  });
  lines.on("line", (line) => {
    const [cmd, ...args] = line.trim().split(" ");
    if (cmd === "data") {
      const now = Date.now();
      send("DDATA", device, { metrics: args.map((arg) => {
        const [name, text] = arg.split("=");
        const m = metrics[name];
        m.value = m.datatype === DataType.String ? text : Number(text);
        return { alias: m.alias, timestamp: now, datatype: m.datatype,
          [m.field]: wire(m, m.value) };
      }) });
      say({ event: "sent", seq: (seq + 255) % 256 });
    } else if (cmd === "gap") {
      seq = (seq + 1) % 256;
      say({ event: "gap" });
    } else if (cmd === "ddeath") {
      send("DDEATH", device, {});
      say({ event: "sent" });
    } else if (cmd === "crash") {
      client.stream.destroy();  // no DISCONNECT: the broker publishes the will
      say({ event: "crashed" });
    }
  });
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
