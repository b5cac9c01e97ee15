// A second Kafka client for the codec tests: Apache Kafka's own Java producer, run as a single source file
// (Java 11+) on the jars the embedded broker already uses:
//
//   java -cp 'LIBS/*' CompressedProducer.java BOOTSTRAP TOPIC < records
//
// stdin holds one record per line, "CODEC PARTITION base64(key) base64(value)". Each codec (gzip, snappy,
// lz4, zstd) gets a producer of its own that sends its records in large compressed batches. On success it
// prints "CODEC sent=N compression-rate=R" per codec (R < 1: the batches really were compressed) and exits
// 0; any failure exits 1 with the exception on stderr.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class CompressedProducer {
    static KafkaProducer<byte[], byte[]> producer(String bootstrap, String codec) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        // Many records per batch, so each codec compresses a real batch rather than one record at a time.
        config.put(ProducerConfig.LINGER_MS_CONFIG, "100");
        config.put(ProducerConfig.BATCH_SIZE_CONFIG, "262144");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return new KafkaProducer<>(config);
    }

    static double compressionRate(KafkaProducer<byte[], byte[]> producer) {
        for (var entry : producer.metrics().entrySet()) {
            MetricName name = entry.getKey();
            if (name.name().equals("compression-rate-avg") && name.group().equals("producer-metrics")) {
                return ((Number) entry.getValue().metricValue()).doubleValue();
            }
        }
        return Double.NaN;
    }

    public static void main(String[] args) throws Exception {
        Base64.Decoder base64 = Base64.getDecoder();
        Map<String, KafkaProducer<byte[], byte[]>> producers = new LinkedHashMap<>();
        Map<String, List<Future<RecordMetadata>>> sent = new LinkedHashMap<>();
        BufferedReader input = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        try {
            for (String line; (line = input.readLine()) != null; ) {
                String[] fields = line.split(" ", 4);
                String codec = fields[0];
                var record = new ProducerRecord<>(
                        args[1], Integer.valueOf(fields[1]), base64.decode(fields[2]), base64.decode(fields[3]));
                var producer = producers.computeIfAbsent(codec, name -> producer(args[0], name));
                sent.computeIfAbsent(codec, name -> new ArrayList<>()).add(producer.send(record));
            }
            for (var entry : producers.entrySet()) {
                entry.getValue().flush();
                for (Future<RecordMetadata> acknowledgement : sent.get(entry.getKey())) {
                    acknowledgement.get();
                }
                System.out.println(entry.getKey() + " sent=" + sent.get(entry.getKey()).size()
                        + " compression-rate=" + compressionRate(entry.getValue()));
            }
        } finally {
            for (var producer : producers.values()) {
                producer.close();
            }
        }
    }
}
