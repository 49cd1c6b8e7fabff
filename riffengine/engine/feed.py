"""Feeding the ring: timeline blocks into the ring (live) or the file, the output gain of a file
output, and the fade-out at the end.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import asyncio
import logging
from typing import SupportsFloat, cast

import numpy as np

from riffengine.audio.livegain import db_to_gain
from riffengine.audio.timeline import ClipDropped, LoopStarted, Stopped
from riffengine.engine.base import EngineBase
from riffengine.engine.parts import (
    CHANNELS,
    FADE_OUT_SECONDS,
    FADE_SKIP_FRAMES,
    FILE_BLOCK,
    REALTIME_BLOCK,
    STOP_PAD_FRAMES,
    STOP_WAIT_SECONDS,
)
from riffengine.host.client import SKIP_AHEAD_SECONDS, HostOutput, RingWriter
from riffengine.state import State

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class FeedRole(EngineBase):
    """Feeding the ring (see the module)."""

    def _fade_frames(self) -> int:
        return round(FADE_OUT_SECONDS * self.sample_rate)

    def _feed_limit(self) -> int:
        """The cursor frame the ring may be fed up to now."""
        assert self.timeline is not None and self.ring is not None
        limit = self.timeline.cursor + self.ring.free()
        if self._end_frame is not None:
            limit = min(limit, self._end_frame - self._fade_frames())
        return limit

    def _feed(self) -> None:
        """Live: top up the ring with timeline blocks (never waits)."""
        assert self.timeline is not None
        if isinstance(self.ring, RingWriter):
            self._catch_up()
        limit = self._feed_limit()
        last = None if self._end_frame is None else self._end_frame - self._fade_frames()
        while (n := min(REALTIME_BLOCK, limit - self.timeline.cursor)) > 0:
            if n < REALTIME_BLOCK and self.timeline.cursor + n != last:
                break  # whole blocks only, except the last one before the end
            self._render_into_ring(n)

    def _catch_up(self) -> None:
        """Under the host: if its stream has passed what we wrote (we were stalled, or we join a
        stream that was playing), skip the timeline to just ahead of it. The host played the
        held loop meanwhile, in the phase the timeline has, so the music goes on unbroken."""
        assert self.timeline is not None and isinstance(self.ring, RingWriter)
        margin = round(SKIP_AHEAD_SECONDS * self.sample_rate) if self.ring.host_started else 0
        ahead = self.ring.frames_read + margin
        timeline = self.timeline
        target = ahead if self.ring.behind(0) else timeline.cursor
        if timeline.current_clip_id is None and not timeline.stopped:
            # nothing plays yet: the stream starts on our first downbeat, the host holds till then
            target = timeline.tempo.bar_line_at_or_after(max(target, ahead))
        while timeline.cursor < target:
            self._handle_block_events(timeline.render_block(min(FILE_BLOCK, target - timeline.cursor)))
        if timeline.cursor > self.ring.frames_written:
            self.ring.restart_at(timeline.cursor)

    async def _feed_file(self) -> None:
        """File output: one block, bounded by the next thing that must happen at a frame."""
        assert self.planner is not None and self.timeline is not None and self.ring is not None
        assert self._end_frame is not None  # a file output has an end
        if self.planner.in_flight is not None and not self._arrivals:
            self._wake.clear()
            await self._wake.wait()  # the cursor waits for the render: simulated render time
            return
        cursor = self.timeline.cursor
        end = cursor + FILE_BLOCK
        end = min(end, self.timeline.tempo.next_bar_frame(cursor))
        for arrival in self._arrivals:
            if arrival.apply_at > cursor:
                end = min(end, arrival.apply_at)
        if self._retry_frame is not None and self._retry_frame > cursor:
            end = min(end, self._retry_frame)
        if self._script and self._script[0].seconds is not None:
            frame = self._script[0].frame(self.sample_rate)
            if frame is not None and frame > cursor:
                end = min(end, frame)
        end = min(end, self._end_frame - self._fade_frames())
        if end <= cursor:
            return
        while self.ring.free() < end - cursor:
            await asyncio.sleep(0.0005)
        self._render_into_ring(end - cursor)
        await asyncio.sleep(0)

    def _render_into_ring(self, n: int) -> None:
        assert self.timeline is not None and self.ring is not None
        block = self.timeline.render_block(n)
        frames = self._apply_gain(block.frames)
        written = self.ring.write(frames)
        assert written == len(frames), "the feeder wrote more than the ring had room for"
        self._handle_block_events(block)

    def _handle_block_events(self, block) -> None:
        hold = getattr(self.output, "hold", None)
        for event in block.events:
            if isinstance(event, (LoopStarted, Stopped)):
                self._heard.append(event)
                if hold is not None and isinstance(event, Stopped):
                    hold(event.frame, None)
                elif hold is not None and isinstance(event, LoopStarted) and event.clip is not None:
                    hold(event.frame, event.clip.audio, event.clip_id)
            elif isinstance(event, ClipDropped):
                self._stats["dropped"] += 1
                self.bus.publish(
                    "loop_dropped", clip_id=event.clip_id, replaced_by=event.replaced_by, frame=event.frame
                )

    @staticmethod
    def _gain_and_mute(state: State) -> tuple[float, bool]:
        """The linear output gain ``state`` sets, and whether it mutes."""
        return db_to_gain(float(cast(SupportsFloat, state.values["gain"]))), bool(state.values["mute"])

    @classmethod
    def _wanted_gain(cls, state: State) -> float:
        """The linear output gain ``state`` asks for (0 while muted)."""
        gain, muted = cls._gain_and_mute(state)
        return 0.0 if muted else gain

    def _apply_gain(self, frames: np.ndarray) -> np.ndarray:
        """Output gain for a file output, ramped linearly over the block when it changes.

        A real-time output applies the gain itself, in its callback after the ring
        (:class:`~riffengine.audio.livegain.LiveGain`), so it is heard within a period.
        """
        if self.realtime:
            return frames
        start, target = self._gain, self._gain_target
        if start == target:
            if start != 1.0:
                frames *= start
            return frames
        ramp = np.linspace(start, target, len(frames), endpoint=False, dtype=np.float32)
        frames *= ramp[:, None]
        self._gain = target
        return frames

    # --- stopping --------------------------------------------------------------------------------

    async def _fade_out(self) -> None:
        """Fade out and wait until the fade has been played.

        On a stop request the queued frames are faded from just ahead of playback (so the
        stream stops within a fraction of a second); at the natural end a faded tail is added
        after what is queued.
        """
        if not self._stream_started:
            return
        assert self.timeline is not None and self.ring is not None and self.output is not None
        assert self._loop is not None
        if self._host is not None:  # the host fades out (or plays on) by itself
            assert isinstance(self.output, HostOutput)
            self._publish_heard()
            stats = dict(self._stats, outputs_lost=self.output.shm.field("outputs_lost"))
            self.bus.publish(
                "stopped",
                frame=self.heard_frame(),
                underruns=self.ring.underruns,
                xruns=int(self.output.xruns),
                **stats,
            )
            return
        fade = self._fade_frames()
        end = None
        if self.realtime and self._stop_requested:
            end = self.ring.fade_unread(FADE_SKIP_FRAMES, fade)
        if end is None:
            frames = self._apply_gain(self.timeline.render_block(fade).frames)
            frames *= np.cos((np.arange(fade) + 0.5) * (np.pi / 2 / fade)).astype(np.float32)[:, None]
            if self.realtime:  # silence after the fade, so the callback never runs dry before the stop
                frames = np.concatenate([frames, np.zeros((STOP_PAD_FRAMES, CHANNELS), np.float32)])
            deadline = self._loop.time() + STOP_WAIT_SECONDS + self.ring.available() / self.sample_rate
            while frames.size and self._loop.time() < deadline:
                frames = frames[self.ring.write(frames) :]
                if frames.size:
                    await asyncio.sleep(0.002)
            end = self.ring.frames_written - (STOP_PAD_FRAMES if self.realtime else 0)
        if self.realtime:
            if self.ring.frames_written - end >= STOP_PAD_FRAMES:
                end += STOP_PAD_FRAMES // 2  # a little silence in the recording, still no underrun
            deadline = self._loop.time() + STOP_WAIT_SECONDS
            if not self._stop_requested:
                deadline += max(0, end - self.ring.frames_read) / self.sample_rate
            while self.ring.frames_read < end and self._loop.time() < deadline:
                await asyncio.sleep(0.005)
            self.output.stop()
        self._publish_heard()
        self.bus.publish(
            "stopped",
            frame=self.heard_frame(),
            underruns=self.ring.underruns,
            xruns=int(getattr(self.output, "xruns", 0)),
            **{k: v for k, v in self._stats.items()},
        )
