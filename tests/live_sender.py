"""A live sender for the tests: remux a video file to MPEG-TS on stdout at its own speed, the way
`ffmpeg -re -i FILE -c copy -f mpegts -` would. With --stall-after S it stops sending after S
seconds of video but keeps the pipe open, like a sender that hangs."""

from __future__ import annotations

import sys
import time

import av


def main(path: str, stall_after: float | None = None) -> None:
    with av.open(path) as src, av.open(sys.stdout.buffer, "w", format="mpegts",
                                       container_options={"flush_packets": "1"}) as out:
        stream = src.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        start = time.monotonic()
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            if stall_after is not None and t >= stall_after:
                sys.stdout.flush()
                time.sleep(3600)
            time.sleep(max(0.0, start + t - time.monotonic()))
            packet.stream = ostream
            out.mux(packet)
            sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None)
