"""Framing: table tests over split points, 1-byte feeds, and a hypothesis property."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioecho.errors import FrameTooLargeError, LocalProtocolError
from trioecho.framing import HEADER_SIZE, MAX_FRAME, FrameDecoder, FrameScanner, encode_frame

BODIES = [b"", b"x", b"hello", bytes(range(256)) * 70]  # 0, 1, 5 and 17,920 bytes (crosses 16 KiB)
STREAM = b"".join(encode_frame(b) for b in BODIES)


def decode_all(chunks: list[bytes], max_frame: int = MAX_FRAME) -> list[bytes]:
    dec = FrameDecoder(max_frame=max_frame)
    out = []
    for c in chunks:
        dec.feed(c)
        while (f := dec.next_frame()) is not None:
            out.append(f)
    assert not dec.mid_frame
    return out


def scan_all(chunks: list[bytes], max_frame: int = MAX_FRAME) -> tuple[bytes, int]:
    sc = FrameScanner(max_frame=max_frame)
    echoed = b"".join(bytes(sc.feed(c)) for c in chunks)
    assert not sc.mid_frame
    return echoed, sc.frames


def test_encode_is_header_plus_body() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_encode_refuses_over_limit() -> None:
    with pytest.raises(LocalProtocolError, match="limit is 4"):
        encode_frame(b"12345", max_frame=4)


# Every split in the small frames and the big frame's header and tail; every
# 97th inside its body (the hypothesis test below covers arbitrary splits).
SPLITS = sorted(set(range(0, 64)) | set(range(64, len(STREAM) - 64, 97)) | set(range(len(STREAM) - 64, len(STREAM) + 1)))


@pytest.mark.parametrize("split", SPLITS, ids=lambda s: f"split{s}")
def test_split_points(split: int) -> None:
    chunks = [STREAM[:split], STREAM[split:]]
    assert decode_all(chunks) == BODIES
    assert scan_all(chunks) == (STREAM, len(BODIES))


def test_one_byte_at_a_time() -> None:
    chunks = [STREAM[i:i + 1] for i in range(len(STREAM))]
    assert decode_all(chunks) == BODIES
    assert scan_all(chunks) == (STREAM, len(BODIES))


def test_many_frames_in_one_chunk() -> None:
    assert decode_all([STREAM * 3]) == BODIES * 3
    assert scan_all([STREAM * 3]) == (STREAM * 3, 3 * len(BODIES))


def test_zero_length_frames() -> None:
    data = encode_frame(b"") * 5
    assert decode_all([data]) == [b""] * 5
    assert scan_all([data]) == (data, 5)


@pytest.mark.parametrize("declared", [5, 0xFFFFFFFF])
def test_over_limit_raises_at_header_before_body(declared: int) -> None:
    header = struct.pack(">I", declared)
    dec = FrameDecoder(max_frame=4)
    dec.feed(header)  # nothing of the body yet
    with pytest.raises(FrameTooLargeError) as ei:
        dec.next_frame()
    assert ei.value.declared == declared and ei.value.limit == 4
    assert dec.buffered == HEADER_SIZE  # no body byte was buffered


def test_scanner_holds_back_partial_header_and_echoes_good_prefix() -> None:
    sc = FrameScanner(max_frame=4)
    good = encode_frame(b"ab")
    assert sc.feed(good + b"\x00\x00") == good  # partial header held back
    assert sc.mid_frame
    with pytest.raises(FrameTooLargeError) as ei:
        sc.feed(b"\x00\x09")
    assert ei.value.echo_ok == b""  # none of the bad header was ever echoed
    sc2 = FrameScanner(max_frame=4)
    with pytest.raises(FrameTooLargeError) as ei2:
        sc2.feed(good + struct.pack(">I", 9) + b"body")
    assert ei2.value.echo_ok == good


def test_mid_frame_tracking() -> None:
    sc = FrameScanner()
    assert not sc.mid_frame
    sc.feed(b"\x00\x00\x00\x02a")
    assert sc.mid_frame
    sc.feed(b"b")
    assert not sc.mid_frame and sc.frames == 1


def test_limit_validation() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=-1)
    with pytest.raises(ValueError):
        FrameScanner(max_frame=1 << 32)


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
)
def test_any_split_sequence_roundtrips(bodies: list[bytes], cuts: list[int]) -> None:
    data = b"".join(encode_frame(b) for b in bodies)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in points + [len(data)]:
        chunks.append(data[prev:p])
        prev = p
    assert decode_all(chunks) == bodies
    assert scan_all(chunks) == (data, len(bodies))
