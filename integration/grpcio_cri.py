#!/usr/bin/env python3
"""CRI calls from grpcio, the C-core gRPC stack, to a Unix socket with the channel's defaults.

Usage: grpcio_cri.py SOCKET

Prints one JSON object per call (code, details, response fields, trailing metadata), so that the
answers through podgraft and straight from containerd can be compared line by line. Requests are
hand-encoded protobuf bytes: no generated stubs, nothing to compile at test time.
"""

import json
import sys

import grpc


def string_field(number, text):
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


RUNTIME = "/runtime.v1.RuntimeService/"
IMAGES = "/runtime.v1.ImageService/"

# (name, method, request bytes, metadata)
CALLS = [
    ("Version", RUNTIME + "Version", string_field(1, "v1"), ()),
    ("Version again", RUNTIME + "Version", string_field(1, "v1"), ()),
    ("ListPodSandbox", RUNTIME + "ListPodSandbox", b"", ()),
    ("ListContainers", RUNTIME + "ListContainers", b"", ()),
    ("ListImages", IMAGES + "ListImages", b"", ()),
    ("Status", RUNTIME + "Status", b"", ()),
    ("PodSandboxStatus of an unknown pod", RUNTIME + "PodSandboxStatus",
     string_field(1, "no-such-sandbox"), ()),
    ("a method containerd does not have", RUNTIME + "NoSuchMethod", b"", ()),
    ("Version with metadata", RUNTIME + "Version", string_field(1, "v1"),
     (("x-request-id", "grpcio-1"), ("x-trace-bin", b"\x00\x01\xfe\xff"))),
    # 192 KiB of metadata: containerd's 16 KiB frames make it a block in many CONTINUATIONs.
    ("Version with large metadata", RUNTIME + "Version", string_field(1, "v1"),
     tuple(("x-large-%d" % i, chr(ord("a") + i) * (48 << 10)) for i in range(4))),
]


def varint(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


def top_level_fields(message):
    """The message's top-level fields as raw bytes, sorted: containerd lists images and
    containers in no fixed order, so only the set of entries can be compared."""
    fields, at = [], 0
    while at < len(message):
        start = at
        key, at = varint(message, at)
        wire = key & 7
        if wire == 0:
            _, at = varint(message, at)
        elif wire == 1:
            at += 8
        elif wire == 2:
            length, at = varint(message, at)
            at += length
        elif wire == 5:
            at += 4
        else:
            raise ValueError("wire type %d" % wire)
        fields.append(message[start:at].hex())
    return sorted(fields)


def main():
    socket = sys.argv[1]
    with grpc.insecure_channel("unix:" + socket) as channel:
        for name, method, request, metadata in CALLS:
            # No serializers: bytes go out and come back as they are.
            call = channel.unary_unary(method)
            try:
                response, state = call.with_call(request, timeout=30, metadata=metadata)
                code, details, trailing = state.code(), state.details(), state.trailing_metadata()
            except grpc.RpcError as err:
                response = b""
                code, details, trailing = err.code(), err.details(), err.trailing_metadata()
            print(json.dumps({
                "call": name,
                "code": code.name,
                "details": details or "",
                "response": top_level_fields(response),
                "trailing": sorted([k, v if isinstance(v, str) else v.hex()]
                                   for k, v in trailing or ()),
            }), flush=True)


if __name__ == "__main__":
    main()
