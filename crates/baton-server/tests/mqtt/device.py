#!/usr/bin/env python3
"""A scripted MQTT device (paho-mqtt 2.x) for Baton's black-box tests.

Reads one JSON instruction per line on stdin and prints one JSON event per line on stdout, so a
Rust test can drive it step by step and wait for what it observes instead of sleeping.

Instructions:
  {"op": "connect", "port": 1883, "version": "3.1.1"|"5", "client_id": "…", "username": "…",
   "password": "…", "clean": true, "session_expiry": 0, "will": {"topic", "payload"}}
  {"op": "subscribe", "topic": "…", "qos": 1}
  {"op": "publish", "topic": "…", "payload": "…", "qos": 1}
  {"op": "disconnect"}

Events:
  {"event": "connack", "rc": n, "session_present": bool}
  {"event": "suback", "mid": n, "codes": [n, …]}
  {"event": "puback", "mid": n, "rc": n}          (QoS 1: the server's PUBACK; QoS 0: sent)
  {"event": "message", "topic": "…", "payload": "…", "qos": n}
  {"event": "disconnected", "rc": n}
  {"event": "error", "what": "…"}
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

OUT = threading.Lock()


def emit(**event):
    with OUT:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def code(reason):
    """A reason code as a number (paho gives ReasonCode objects, or ints for MQTT 3.1.1)."""
    return reason.value if hasattr(reason, "value") else int(reason)


def on_connect(_client, _userdata, flags, reason, _properties):
    emit(event="connack", rc=code(reason), session_present=bool(flags.session_present))


def on_subscribe(_client, _userdata, mid, reasons, _properties):
    emit(event="suback", mid=mid, codes=[code(r) for r in reasons])


def on_publish(_client, _userdata, mid, reason, _properties):
    emit(event="puback", mid=mid, rc=code(reason))


def on_message(_client, _userdata, message):
    emit(event="message", topic=message.topic, payload=message.payload.decode("utf-8", "replace"),
         qos=message.qos)


def on_disconnect(_client, _userdata, _flags, reason, _properties):
    emit(event="disconnected", rc=code(reason))


def connect(step):
    v5 = step.get("version", "5") == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=step.get("client_id", ""),
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else step.get("clean", True),
    )
    # Reconnecting is the test's decision, never the library's.
    client.reconnect_delay_set(min_delay=3600, max_delay=3600)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    if step.get("username") is not None:
        client.username_pw_set(step["username"], step.get("password"))
    will = step.get("will")
    if will:
        client.will_set(will["topic"], will.get("payload", ""), qos=will.get("qos", 0))
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = step.get("session_expiry", 0)
    kwargs = {"keepalive": step.get("keepalive", 60)}
    if v5:
        kwargs["clean_start"] = step.get("clean", True)
        kwargs["properties"] = properties
    client.connect(step.get("host", "127.0.0.1"), step["port"], **kwargs)
    client.loop_start()
    return client


def main():
    client = None
    for line in sys.stdin:
        if not line.strip():
            continue
        step = json.loads(line)
        op = step["op"]
        try:
            if op == "connect":
                if client is not None:
                    client.disconnect()
                    client.loop_stop()
                client = connect(step)
            elif op == "subscribe":
                client.subscribe(step["topic"], qos=step.get("qos", 1))
            elif op == "publish":
                info = client.publish(step["topic"], step.get("payload", ""), qos=step.get("qos", 1))
                if step.get("qos", 1) == 0:
                    emit(event="puback", mid=info.mid, rc=0)
            elif op == "disconnect":
                client.disconnect()
                client.loop_stop()
                client = None
            else:
                emit(event="error", what=f"unknown op {op}")
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            emit(event="error", what=f"{op}: {e}")
    if client is not None:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
