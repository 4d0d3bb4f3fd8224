"""``nats://host:4222`` — topics on NATS JetStream (nats-py).

How the topic API maps onto JetStream, and what the adapter adds where it does not:

- **topic ↔ stream** ``LP_<token>`` with the one subject ``lakeport.t.<token>``. Names are
  encoded reversibly into the token (``=XX`` escapes, see :mod:`.codec`); the name and the
  whole :class:`TopicOptions` are kept as JSON in the stream description, so
  ``topic_info`` returns the options the topic was created with. Only streams with the
  ``LP_`` prefix are listed.
- **options**: persistence disk/ram ↔ storage file/memory; ``max_size`` ↔ ``max_bytes`` and
  ``max_age`` ↔ ``max_age`` (discard old); ``dedup_window`` ↔ ``duplicate_window`` (capped
  by ``max_age`` as JetStream requires). ``dedup_window=0`` cannot switch JetStream's
  window off, so the producer then does not send msg ids.
- **messages**: seqno ↔ stream sequence, time ↔ the stored timestamp (from the ack subject),
  producer ↔ header ``Lakeport-Producer``, key ↔ ``Lakeport-Key``, user headers ↔
  ``Lakeport-H-<name>`` (names and values percent-encoded), msg_id ↔ ``Nats-Msg-Id``: a
  duplicate publish is answered with the original sequence.
- **producer**: publishes are pipelined: each carries its own reply subject and the
  PubAck resolves its future, so many are in flight at once.
- **consumer name ↔ durable pull consumer** named by the token of the consumer name.
  Positions: unread resumes the durable (a new one starts at the first message);
  beginning ↔ ``DeliverPolicy.ALL``; end ↔ ``BY_START_SEQUENCE`` last + 1; seqno ↔
  ``BY_START_SEQUENCE``; time and since ↔ ``BY_START_TIME``. An explicit position given to
  an exclusive or standby consumer re-creates the durable there. When an exclusive or
  standby member becomes active and the durable still has messages delivered to a member
  that is gone, the durable is re-created at its last ack, so they come again at once and
  in order instead of after ``ack_wait``.
- **acks**: exclusive/standby ↔ ``AckPolicy.ALL`` (one ack covers everything before it);
  shared ↔ ``AckPolicy.EXPLICIT``, every delivered message up to the seqno is acked. The
  last ack of each call waits for the server's confirmation. ``ack_timeout`` ↔
  ``ack_wait``; when it expires an exclusive consumer re-creates its durable at the last
  ack (so redelivery is in order) and a shared member naks what it holds.
- **modes**: JetStream has no exclusive consumer. The adapter keeps a lease per consumer
  name in the KV bucket ``lakeport_leases`` (see :mod:`.lease`): exclusive refuses a second
  holder with Conflict; standby members wait for the lease and take over at the last ack
  when the holder closes or dies (the lease expires after a few seconds); shared members
  pull from one durable, which JetStream supports natively. A shared member without
  ``ack_timeout`` keeps what it holds "in progress", so only a dead member's messages go to
  the others (after 30 s), and closing naks them at once.
- **lag** ↔ the durable's ``num_pending + num_ack_pending``; ``topic_info().consumers`` lists
  the durables with their ack floor, lag, mode and live lease holders. A deleted stream
  makes an open consumer raise Closed on its next receive.
- **clusters**: the URL may name several servers of one cluster
  (``nats://a:4222,b:4222,c:4222?replicas=3``, see :mod:`.url`). ``replicas`` ↔
  ``num_replicas`` (the topic option, else the URL's default); the lease bucket gets the
  URL's ``replicas`` too. While a leader is elected, producers publish again with the same
  msg id and consumers pull and ack again, up to the URL's ``failover_timeout``.
- **connection**: an unreachable server raises Unavailable within about 3 s; once connected
  the client rides out server restarts for about a minute.
"""

from lakeport.streams.jetstream.consumer import JetStreamConsumer
from lakeport.streams.jetstream.engine import JetStreamEngine
from lakeport.streams.jetstream.producer import JetStreamProducer

__all__ = ["JetStreamConsumer", "JetStreamEngine", "JetStreamProducer"]
