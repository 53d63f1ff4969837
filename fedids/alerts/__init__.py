"""Alerting: turn the detector's verdicts on flow records into STIX 2.1 alerts on Kafka.

Pipeline (each step its own module so each can be tested and replaced alone):

``flows``      read flow records and score them in vectorized batches
``aggregate``  group detections per (attack class, source, destination, time window)
``stix``       build and validate one STIX 2.1 bundle per group (deterministic ids)
``outbox``     durable local store: an alert is written here *before* it is sent
``producer``   idempotent confluent-kafka producer; removes an alert from the outbox
               only once its delivery report succeeded
``detect``     :func:`fedids.alerts.detect.run_detect`, what ``fedids detect`` runs
``subscriber`` :func:`fedids.alerts.subscriber.consume`, what ``fedids subscribe`` runs
``broker``     dev/demo-only helper that runs a local tansu broker

Nothing here needs a particular broker: any Kafka cluster reachable through librdkafka
settings works.
"""
