#!/usr/bin/env python3
"""A real OTLP/HTTP trace receiver for the tracing end-to-end tests.

    python otlp_receiver.py --port 0 --out FILE

Binds 127.0.0.1, prints {"event":"listening","port":P} on stdout, and accepts
POST /v1/traces (application/x-protobuf or application/json, optionally gzip).
Every span received is appended to FILE as one JSON line:
  {"traceId", "spanId", "parentSpanId", "name", "kind", "attributes",
   "status": {"code", "message"}, "service", "scope"}
Decoding uses the official opentelemetry-proto messages.
"""

import argparse
import base64
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

LOCK = threading.Lock()  # serialises appends to the output file
OUT = ""


def any_value(v):
    """An AnyValue as plain JSON (arrays and maps included)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids in hex; protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, list):
        return [hex_ids_to_base64(x) for x in node]
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode()
                if k in ID_KEYS and isinstance(v, str) else hex_ids_to_base64(v)
                for k, v in node.items()}
    return node


def span_lines(req):
    """One dict per span of an ExportTraceServiceRequest."""
    for rs in req.resource_spans:
        service = attrs(rs.resource.attributes).get("service.name", "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "traceId": s.trace_id.hex(),
                    "spanId": s.span_id.hex(),
                    "parentSpanId": s.parent_span_id.hex(),
                    "name": s.name,
                    # SPAN_KIND_SERVER -> SERVER, SPAN_KIND_UNSPECIFIED -> UNSPECIFIED
                    "kind": Span.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
                    "attributes": attrs(s.attributes),
                    "status": {"code": Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"),
                               "message": s.status.message},
                    "service": service,
                    "scope": ss.scope.name,
                }


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep stderr quiet
        return

    def do_POST(self):
        if self.path.split("?")[0] != "/v1/traces":
            return self.reply(404, "text/plain", b"not found")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        is_json = self.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"
        req = ExportTraceServiceRequest()
        try:
            json_format.ParseDict(hex_ids_to_base64(json.loads(body)), req) if is_json else req.ParseFromString(body)
        except Exception as e:  # malformed payload
            return self.reply(400, "text/plain", str(e).encode())
        lines = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in span_lines(req))
        with LOCK, open(OUT, "a") as f:
            f.write(lines)
        resp = ExportTraceServiceResponse()  # empty: everything accepted
        if is_json:
            return self.reply(200, "application/json", json_format.MessageToJson(resp).encode())
        self.reply(200, "application/x-protobuf", resp.SerializeToString())

    def do_GET(self):  # other methods/paths: 404
        self.reply(404, "text/plain", b"not found")

    def reply(self, code, ctype, data):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    OUT = a.out
    open(OUT, "a").close()  # exists (possibly empty) from the start
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(json.dumps({"event": "listening", "port": srv.server_address[1]}, separators=(",", ":")), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
