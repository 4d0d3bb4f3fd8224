"""A chained step: read raw-sensor-data, add ``"processed": true``, write transformed-data.

Run it from the repository root with::

    lakeport flow run examples.demo_step:process
"""

from lakeport.streams.flow import step


@step(input="raw-sensor-data", output="transformed-data")
def process(payload):
    payload["processed"] = True
    return payload  # None drops the message; a list emits several
