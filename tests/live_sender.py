"""A live sender for the tests: remux a video file to MPEG-TS at its own speed, the way
`ffmpeg -re -i FILE -c copy -f mpegts OUT` would.

    live_sender.py FILE                  to stdout, at the video's own speed
    live_sender.py FILE --fast           to stdout all at once, as fast as the pipe takes it
                                         (`cat recording.ts |`)
    live_sender.py FILE --stall-after S  stop sending after S seconds of video, pipe kept open
    live_sender.py FILE --serve PORT     a TCP server on 127.0.0.1:PORT (FFmpeg's own listener):
                                         the first client gets the stream at its own speed
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import av


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--stall-after", type=float)
    parser.add_argument("--serve", type=int)
    args = parser.parse_args()
    recording = io.BytesIO()  # --fast: the whole stream, sent in one write at the end
    target = f"tcp://127.0.0.1:{args.serve}?listen=1" if args.serve else recording if args.fast else sys.stdout.buffer
    with av.open(args.path) as src, av.open(target, "w", format="mpegts",
                                            container_options={"flush_packets": "1"}) as out:
        stream = src.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        start = time.monotonic()
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            if args.stall_after is not None and t >= args.stall_after:
                sys.stdout.flush()
                time.sleep(3600)
            if not args.fast:
                time.sleep(max(0.0, start + t - time.monotonic()))
            packet.stream = ostream
            out.mux(packet)
            if target is sys.stdout.buffer:
                sys.stdout.buffer.flush()
    if args.fast:
        sys.stdout.buffer.write(recording.getvalue())
        sys.stdout.buffer.flush()

if __name__ == "__main__":
    main()
