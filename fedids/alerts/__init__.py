"""Alerting: turn the detector's verdicts on flow records into STIX 2.1 alerts on Kafka.

Pipeline (each step its own module so each can be tested and replaced alone):

``flows``      read flow records and score them in vectorized batches
``aggregate``  group detections per (attack class, source, destination, burst);
               ``bursts`` keeps bursts open across windows when streaming
``stix``       build and validate one STIX 2.1 bundle per group; ``stix_ids``
               (deterministic ids), ``stix_extension`` (the fedids property extension),
               ``stix_validate``, ``stix_summary``
``outbox``     durable local store: an alert is written here *before* it is sent, and
               the delivered ledger keeps it from being sent twice (``outbox_schema``,
               ``outbox_repair``: a corrupt file is moved aside and salvaged)
``delivery``   one run's delivery: in-doubt check (``indoubt``), backlog, new alerts
``producer``   idempotent confluent-kafka producer; an alert moves to the ledger only
               once its delivery report succeeded
``detect``     :func:`fedids.alerts.detect.run_detect`, what ``fedids detect`` runs
``stream``     ``fedids detect --input-topic``
``subscriber`` :func:`fedids.alerts.subscriber.consume`, what ``fedids subscribe`` runs
``broker``     dev/demo-only helper that runs a local tansu broker

Nothing here needs a particular broker: any Kafka cluster reachable through librdkafka
settings works.
"""
