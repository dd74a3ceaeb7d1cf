"""The common exchange relayed from the connections' callbacks, with no coroutine: a
bodiless request whose upstream connection is kept alive goes out from the client
side's `data_received`, and a response that came whole in one read goes back from the
upstream side's. Waking the relay's coroutine for each cost two futures, two loop
iterations and two resumptions of its stack per request.

Everything else is handed to the coroutine (`Relay`) at a message boundary or with the
exchange in flight: a request with a body, a HEAD or a CONNECT, a target that must be
parsed with an error or an upstream that must be opened (and checked by the policy),
a 1xx or bodiless response, a response framed by the connection's end or split over
reads, a client whose writes are paused, a side that ended or failed. The same
targets, upstreams and request log are used on both paths, so the checks and the
logging are the coroutine's own."""

from __future__ import annotations

import asyncio

from daemon.egress.exchange import Exchange, Relay, forwarded_head, method_text, relayed_head
from daemon.egress.framing import BodyWriter
from daemon.egress.messages import BODYLESS, CLOSED, END, Head, Sentinel


class _Handoff:
    """What the coroutine is woken with: `REQUEST` (take the client's next event
    yourself), `CLOSE` (the client connection is done), an `Exchange` in flight (relay
    its response), or an exception raised in a callback."""


REQUEST = _Handoff()
CLOSE = _Handoff()

Woken = _Handoff | Exchange | Exception


class InlineRelay(Relay):
    """A relay whose common exchanges run in the sides' callbacks while its coroutine
    waits in `next_request`."""

    _handoff: asyncio.Future[Woken] | None = None
    _inflight: Exchange | None = None  # a request sent upstream from a callback

    async def next_request(self) -> Head | bytes | Sentinel:
        """The client's next event that the coroutine must handle itself (then
        `handle` it as before); until one comes, common exchanges are relayed from
        the callbacks. CLOSED when the client connection must end."""
        client = self.client
        while True:
            if client.write_paused:
                await client.flush()  # a response written from a callback must drain
            handoff: asyncio.Future[Woken] = client.loop.create_future()
            self._handoff = handoff
            client.listener = self._on_client
            try:
                self._on_client()  # requests already queued
                woken = await handoff
            except BaseException:
                self._abandon(handoff)
                raise
            finally:
                client.listener = None
                self._handoff = None
            if woken is REQUEST:
                return await client.next_event()
            if woken is CLOSE:
                return CLOSED
            if isinstance(woken, Exchange):
                if not await self._respond(woken):
                    return CLOSED
                continue
            assert isinstance(woken, Exception)
            raise woken

    # --- the callbacks ----------------------------------------------------------

    def _on_client(self) -> None:
        if self._inflight is not None or self._handoff is None:
            return  # a response is awaited (what the client sends next waits), or handed off
        try:
            self._send_queued()
        except Exception as err:
            self._hand(err)

    def _on_upstream(self) -> None:
        exchange = self._inflight
        if exchange is None:
            return
        try:
            if self._respond_inline(exchange):
                self._send_queued()  # a request the client pipelined
        except Exception as err:
            self._hand(err)

    def _send_queued(self) -> None:
        """Send the client's queued request upstream, if it is a common one."""
        client = self.client
        events = client.queued
        if not events:
            if client.ended:
                self._hand(REQUEST)
            return  # the head is still coming
        request = events[0]
        if (
            len(events) < 2
            or events[1] is not END
            or type(request) is not Head
            or request.upgrade
            or request.method in (b"HEAD", b"CONNECT")
            or client.upgraded
            or client.write_paused
        ):
            self._hand(REQUEST)
            return
        try:
            target = self.target_of(request)
        except Exception:
            self._hand(REQUEST)  # the coroutine parses it again and answers the error
            return
        upstream = self.upstreams.idle(target)
        if upstream is None:
            self._hand(REQUEST)  # to be opened, and checked, by the coroutine
            return
        events.popleft()
        events.popleft()  # the head and its END (a request's head needs nothing of take)
        exchange = self._begin(request, method_text(request.method), target, upstream)
        self._inflight = exchange
        upstream.listener = self._on_upstream
        upstream.expect_response(False)
        if not upstream.send_now(forwarded_head(request, target)):
            self._hand_exchange()  # the coroutine finds the connection closed: a 502

    def _respond_inline(self, exchange: Exchange) -> bool:
        """Relay the response if it is all here; True when the client connection
        can take the next request from here."""
        upstream = exchange.upstream
        events = upstream.queued
        if not events:
            if upstream.ended:
                self._hand_exchange()
            return False  # the head is still coming
        response = events[0]
        client = self.client
        if (
            events[-1] is not END
            or type(response) is not Head
            or response.status < 200
            or response.status in BODYLESS
            or not (response.chunked or response.length is not None)
            or client.write_paused
        ):
            self._hand_exchange()
            return False
        body = upstream.take_message()
        entry = exchange.entry
        if entry is not None:
            entry.status = response.status
            entry.response_headers = response.headers
        head = relayed_head(response, False)
        if response.chunked:
            client.write(head)
            rechunked = BodyWriter(client, True)
            for chunk in body:
                rechunked.data(chunk)
            rechunked.end()
            written = client.send_now(b"")
        else:  # under Content-Length: as it came, in one write with its head
            written = client.send_now(head + body[0] if len(body) == 1 else head + b"".join(body))
        reusable = written and response.keep_alive and not upstream.at_eof
        if not written:
            upstream.close()
        self._inflight = None
        upstream.listener = None
        self._finish(exchange, reusable)
        if not (written and exchange.request.keep_alive):
            self._hand(CLOSE)
            return False
        return True

    # --- handing over to the coroutine ------------------------------------------

    def _hand(self, woken: Woken) -> None:
        handoff, self._handoff = self._handoff, None
        self.client.listener = None
        if isinstance(woken, Exception):
            self._drop_exchange()
        if handoff is not None and not handoff.done():
            handoff.set_result(woken)

    def _hand_exchange(self) -> None:
        exchange, self._inflight = self._inflight, None
        assert exchange is not None
        exchange.upstream.listener = None
        self._hand(exchange)

    def _drop_exchange(self) -> None:
        """Close the upstream of a request in flight and count it (it will never
        be answered to the client)."""
        exchange, self._inflight = self._inflight, None
        if exchange is not None:
            self._close(exchange)

    def _abandon(self, handoff: asyncio.Future[Woken]) -> None:
        """The coroutine was cancelled: nothing in flight may be left open."""
        self._drop_exchange()
        if handoff.done() and not handoff.cancelled():
            woken = handoff.result()
            if isinstance(woken, Exchange):
                self._close(woken)

    def _close(self, exchange: Exchange) -> None:
        exchange.upstream.listener = None
        exchange.upstream.close()
        self._finish(exchange, False)
