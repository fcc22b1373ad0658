#!/bin/bash
# Same path and arguments as in the apache/kafka image, so one compose health check fits both.
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xmx128m} -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties \
  -cp "/opt/kafka/libs/*:/opt/kafka/tools/*" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
