package s3upload

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// reasonDeletedBeforeUpload is the lost counter's reason for a file deleted (by EMS, or by a
// recording's retention) before it could be uploaded.
const reasonDeletedBeforeUpload = "deleted_before_upload"

// metrics are one plugin instance's collectors. The registerer handed to the plugin already
// attaches the instance's "plugin" label.
type metrics struct {
	bytes         prometheus.Counter
	objects       *prometheus.CounterVec // by object kind: segment, playlist, recording
	unchanged     prometheus.Counter
	deleted       prometheus.Counter
	refused       *prometheus.CounterVec // by reason
	uploadSeconds prometheus.Histogram
	eventToObject prometheus.Histogram
	backlog       prometheus.Gauge
	repairs       prometheus.Counter
	lost          *prometheus.CounterVec // by reason
	abortFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_s3upload_bytes_total", Help: "Bytes uploaded to S3.",
		}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_s3upload_objects_total", Help: "Objects uploaded to S3, by kind (segment, playlist, recording).",
		}, []string{"kind"}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_s3upload_unchanged_total", Help: "Uploads skipped because the bucket already had the same file.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_s3upload_deleted_total", Help: "Objects deleted after EMS deleted the file.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_s3upload_refused_paths_total", Help: "File paths refused because they lead outside the media roots (security events).",
		}, []string{"reason"}),
		uploadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "emsflow_s3upload_upload_seconds", Help: "Time to upload one object.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		eventToObject: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "emsflow_s3upload_event_to_object_seconds", Help: "Time from the EMS event (its timestamp, whole seconds) to the object stored.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "emsflow_s3upload_backlog", Help: "Files waiting for or in upload.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_s3upload_backfill_repairs_total", Help: "Files uploaded by backfill because the bucket lacked them or held another version.",
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_s3upload_lost_files_total", Help: "Files that never reached the bucket and never will, by reason (deleted_before_upload: the file, a chunk or a recording, was deleted before it could be uploaded).",
		}, []string{"reason"}),
		abortFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_s3upload_abort_failures_total", Help: "Multipart uploads no longer needed that the server refused to abort (access denied, say); they stay in the bucket until its AbortIncompleteMultipartUpload lifecycle rule removes them.",
		}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.bytes, m.objects, m.unchanged, m.deleted, m.refused, m.uploadSeconds, m.eventToObject, m.backlog, m.repairs, m.lost, m.abortFailures} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}
