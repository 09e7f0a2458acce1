#!/usr/bin/env python3
"""Serves the part of the GCS XML API that object_store speaks (PUT, GET/HEAD with ranges, DELETE,
list-type=2 listings) by translating each request to fake-gcs-server's JSON API.

fake-gcs-server implements GCS's semantics (generations, ifGenerationMatch preconditions, ranged
media downloads) but answers XML-API object uploads only for signed URLs. This adapter keeps those
semantics: it holds no state of its own and passes every status code through.

usage: gcs_xml_api.py LISTEN_PORT UPSTREAM_PORT
"""
import email.utils
import http.client
import json
import os
import sys
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

LISTEN, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])


def q(text):
    return urllib.parse.quote(text, safe="")


def upstream(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp, data


def http_date(rfc3339):
    ts = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return email.utils.format_datetime(ts, usegmt=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def target(self):
        url = urllib.parse.urlsplit(self.path)
        bucket, _, obj = url.path.lstrip("/").partition("/")
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        return urllib.parse.unquote(bucket), urllib.parse.unquote(obj), query

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def object_headers(self, meta):
        return [
            ("ETag", '"%s"' % meta.get("etag", meta["generation"])),
            ("Last-Modified", http_date(meta["updated"])),
            ("x-goog-generation", str(meta["generation"])),
        ]

    def do_PUT(self):
        bucket, obj, _ = self.target()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # A multipart upload: the version of fake-gcs-server on PyPI honours preconditions there
        # (and ignores them on uploadType=media).
        query = {"uploadType": "multipart"}
        match = self.headers.get("x-goog-if-generation-match")
        if match is not None:
            query["ifGenerationMatch"] = match
        boundary = os.urandom(16).hex()
        multipart = b"".join([
            b"--%s\r\nContent-Type: application/json\r\n\r\n" % boundary.encode(),
            json.dumps({"name": obj}).encode(),
            b"\r\n--%s\r\nContent-Type: application/octet-stream\r\n\r\n" % boundary.encode(),
            body,
            b"\r\n--%s--\r\n" % boundary.encode(),
        ])
        status, _, data = upstream(
            "POST",
            "/upload/storage/v1/b/%s/o?%s" % (q(bucket), urllib.parse.urlencode(query)),
            multipart,
            {"Content-Type": "multipart/related; boundary=%s" % boundary},
        )
        if status != 200:
            return self.reply(status, data)
        self.reply(200, b"", self.object_headers(json.loads(data)))

    def do_DELETE(self):
        bucket, obj, _ = self.target()
        status, _, data = upstream("DELETE", "/storage/v1/b/%s/o/%s" % (q(bucket), q(obj)))
        self.reply(204 if status in (200, 204) else status, b"" if status in (200, 204) else data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        bucket, obj, query = self.target()
        if not obj:
            return self.list(bucket, query)
        status, _, data = upstream("GET", "/storage/v1/b/%s/o/%s" % (q(bucket), q(obj)))
        if status != 200:
            return self.reply(status, data)
        meta = json.loads(data)
        headers = {}
        if self.headers.get("Range"):
            headers["Range"] = self.headers["Range"]
        status, resp, data = upstream(
            "GET", "/storage/v1/b/%s/o/%s?alt=media" % (q(bucket), q(obj)), None, headers
        )
        extra = self.object_headers(meta)
        if resp.getheader("Content-Range"):
            extra.append(("Content-Range", resp.getheader("Content-Range")))
        self.reply(status, data, extra)

    def list(self, bucket, query):
        params = {}
        for ours, theirs in (("prefix", "prefix"), ("delimiter", "delimiter"),
                             ("continuation-token", "pageToken"), ("max-keys", "maxResults"),
                             ("start-after", "startOffset")):
            if ours in query:
                params[theirs] = query[ours]
        status, _, data = upstream(
            "GET", "/storage/v1/b/%s/o?%s" % (q(bucket), urllib.parse.urlencode(params))
        )
        if status != 200:
            return self.reply(status, data)
        listing = json.loads(data)
        out = ["<?xml version='1.0' encoding='UTF-8'?><ListBucketResult>"]
        out.append("<Name>%s</Name>" % escape(bucket))
        for item in listing.get("items", []):
            if query.get("start-after") and item["name"] <= query["start-after"]:
                continue
            out.append(
                "<Contents><Key>%s</Key><Size>%s</Size><LastModified>%s</LastModified><ETag>\"%s\"</ETag></Contents>"
                % (escape(item["name"]), item["size"], item["updated"], escape(item.get("etag", "")))
            )
        for prefix in listing.get("prefixes", []):
            out.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(prefix))
        if listing.get("nextPageToken"):
            out.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(listing["nextPageToken"]))
        out.append("</ListBucketResult>")
        self.reply(200, "".join(out).encode(), [("Content-Type", "application/xml")])


ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
