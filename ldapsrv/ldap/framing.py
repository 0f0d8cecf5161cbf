"""Cut a TCP byte stream into whole LDAPMessage PDUs.

TCP delivers LDAP in arbitrary pieces: one read may hold half a request, or
twenty. The framer buffers bytes and hands out each complete outer TLV exactly
once. It deliberately knows nothing about the message inside; the codec does.

It is also the first line of defence: the outer header alone says whether a
peer is speaking LDAP at all and how much memory the message will need, so a
wrong first octet, an indefinite length or an oversized declaration is refused
before a single byte of the body is buffered.
"""

from __future__ import annotations

from ldapsrv.ldap.ber import SEQUENCE, BERError, read_header
from ldapsrv.ldap.messages import ProtocolViolation

__all__ = ["PDUFramer"]


class PDUFramer:
    """Incremental splitter of a byte stream into LDAPMessage PDUs.

    The buffer is a ``bytearray`` read through an offset, and consumed bytes
    are dropped once per :meth:`feed`; so framing costs O(total bytes) however
    small the pieces are (a byte-at-a-time peer does not make it quadratic).
    After a :class:`ProtocolViolation` the stream is unusable and the
    connection must be closed; the framer makes no attempt to resynchronise.
    """

    __slots__ = ("_buffer", "_max_pdu_bytes")

    def __init__(self, max_pdu_bytes: int) -> None:
        if max_pdu_bytes < 2:
            raise ValueError("max_pdu_bytes must allow at least a TLV header")
        self._max_pdu_bytes = max_pdu_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as part of a complete PDU."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` to the stream; return every PDU it completes, in order.

        Raises :class:`ProtocolViolation` as soon as the bytes buffered so far
        prove that the next PDU is not an acceptable LDAPMessage.
        """
        buffer = self._buffer
        buffer += data
        available = len(buffer)
        offset = 0
        pdus: list[bytes] = []
        while offset < available:
            if buffer[offset] != SEQUENCE:
                raise ProtocolViolation(
                    f"LDAPMessage must start with a SEQUENCE (0x30), got 0x{buffer[offset]:02x}"
                )
            try:
                header = read_header(buffer, offset, available)
            except BERError as exc:
                raise ProtocolViolation(f"bad LDAPMessage header: {exc}") from None
            if header is None:
                break
            _, header_length, value_length = header
            total = header_length + value_length
            if total > self._max_pdu_bytes:
                raise ProtocolViolation(
                    f"LDAPMessage of {total} bytes exceeds the limit of {self._max_pdu_bytes} bytes"
                )
            if offset + total > available:
                break
            if offset == 0 and total == available:
                pdus.append(bytes(buffer))
            else:
                pdus.append(bytes(buffer[offset : offset + total]))
            offset += total
        if offset:
            # One deletion per feed; CPython drops a bytearray prefix without
            # moving the tail when it can, and in any case only the partial
            # remainder (bounded by max_pdu_bytes) is ever moved.
            del buffer[:offset]
        return pdus
