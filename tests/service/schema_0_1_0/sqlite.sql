CREATE TABLE lossweep_sweeps (
	id VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	owner VARCHAR(200) NOT NULL,
	preset VARCHAR(100),
	status VARCHAR(16) NOT NULL,
	message TEXT NOT NULL,
	spec JSON NOT NULL,
	num_trials INTEGER,
	sweep_dir TEXT NOT NULL,
	ray_submission_id VARCHAR(128),
	ray_job_status VARCHAR(16),
	cancel_requested BOOLEAN NOT NULL,
	progress JSON,
	created_at DATETIME NOT NULL,
	submitted_at DATETIME,
	started_at DATETIME,
	finished_at DATETIME,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_lossweep_sweeps_created_at ON lossweep_sweeps (created_at);

CREATE INDEX ix_lossweep_sweeps_owner ON lossweep_sweeps (owner);

CREATE INDEX ix_lossweep_sweeps_status ON lossweep_sweeps (status);

CREATE INDEX ix_lossweep_sweeps_owner_queue ON lossweep_sweeps (owner, status, ray_submission_id);

CREATE INDEX ix_lossweep_sweeps_queue ON lossweep_sweeps (status, ray_submission_id, created_at);

CREATE TABLE lossweep_tokens (
	id INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	prefix VARCHAR(16) NOT NULL,
	is_admin BOOLEAN NOT NULL,
	revoked BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (token_hash)
);

CREATE INDEX ix_lossweep_tokens_name ON lossweep_tokens (name);

CREATE TABLE lossweep_idempotency (
	id INTEGER NOT NULL,
	owner VARCHAR(200) NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	body_hash VARCHAR(64) NOT NULL,
	sweep_id VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_lossweep_idempotency_owner_key UNIQUE (owner, "key"),
	FOREIGN KEY(sweep_id) REFERENCES lossweep_sweeps (id) ON DELETE CASCADE
);
