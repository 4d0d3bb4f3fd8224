"""What a rule is made of, as a user writes it: :class:`RuleSpec` (a statement and its actions).

A rule's actions get each output row (a JSON object) of every block; the block is acked on
the rule's topic only once every action confirmed every row (or sent it to the rule's
dead-letter topic after its last try):

- ``{"type": "topic", "topic": "hot-readings"}``: a lakeport topic, exactly once (message
  ids from the rule and the input seqno or window);
- ``{"type": "mqtt", "url": "mqtt://broker:1883", "publish": "plant/{asset}/avg", "qos": 1}``:
  an MQTT topic per row from the template (the connection options of a bridge: username,
  password as ``<% secrets.NAME %>``, ca_file, cert_file, key_file, protocol);
- ``{"type": "amqp", "url": "amqp://host:5672/", "exchange": "averages",
  "exchange_type": "topic", "routing_key": "plant.{asset}.avg"}``: an AMQP exchange with a
  routing key per row, published with confirms;
- ``{"type": "observations"}``: the server's observation store (rows in the app message
  format: ``asset``, ``datastream``, ``value``, optional ``time`` and ``unit``);
- ``{"type": "webhook", "url": "https://...", "headers": {...}, "retries": 5}``: an HTTP POST
  of the rows as a JSON array, retried with backoff on a network error, a 429 or a 5xx.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from lakeport.routing.bridge import first_problem


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicAction(_Action):
    type: Literal["topic"] = "topic"
    topic: str = Field(description="the lakeport topic the rows go to")


class _BrokerAction(_Action):
    url: str = Field(description="the broker URL")
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="or <% secrets.NAME %>")
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def connection(self) -> dict[str, Any]:
        """The bridge options of the connection."""
        return self.model_dump(exclude={"type", "publish", "qos", "protocol", "exchange",
                                        "exchange_type", "routing_key"}, exclude_none=True)


class MqttAction(_BrokerAction):
    type: Literal["mqtt"] = "mqtt"
    publish: str = Field(description="the MQTT topic template: plant/{asset}/avg")
    qos: int = Field(default=1, ge=0, le=1)
    protocol: Literal["3.1.1", "5"] | None = None


class AmqpAction(_BrokerAction):
    type: Literal["amqp"] = "amqp"
    exchange: str = Field(description="the exchange the rows are published to")
    exchange_type: Literal["direct", "topic", "fanout", "headers"] = "topic"
    routing_key: str = Field(default="", description="the routing key template: "
                             "plant.{asset}.avg")


class ObservationsAction(_Action):
    type: Literal["observations"] = "observations"


class WebhookAction(_Action):
    type: Literal["webhook"] = "webhook"
    url: str = Field(description="http:// or https:// URL the rows are POSTed to")
    headers: dict[str, str] = Field(default_factory=dict, description="values may be "
                                    "<% secrets.NAME %>")
    retries: int = Field(default=5, ge=0, le=100)
    timeout: float = Field(default=10.0, gt=0, le=300)
    batch: int = Field(default=1000, ge=1, le=100_000, description="rows per request")


ActionSpec = Annotated[TopicAction | MqttAction | AmqpAction | ObservationsAction
                       | WebhookAction, Field(discriminator="type")]


class RuleSpec(BaseModel):
    """A rule: its statement, its actions and how it reads event time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the rule's name (its consumer is rule.<name>)")
    sql: str = Field(description='SELECT ... FROM "topic" [WHERE ...] [GROUP BY ..., '
                     "TUMBLING(10s)]")
    actions: list[ActionSpec] = Field(min_length=1)
    event_time: str | None = Field(default="time", description="the payload field with the "
                                   "event time (None: the topic's time)")
    lateness: str | float = Field(default=0, description="how long after a window's end rows "
                                  "may still come: 5s")
    dead_letter_topic: str | None = Field(default=None, description="default "
                                          "dead-letter.rule.<name>")
    description: str = ""

    @classmethod
    def parse(cls, **fields: Any) -> RuleSpec:
        """Build a spec; a bad field is :class:`Invalid` naming it."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise first_problem(exc, "rule field", "rule") from None


__all__ = ["ActionSpec", "AmqpAction", "MqttAction", "ObservationsAction", "RuleSpec",
           "TopicAction", "WebhookAction"]
