// Schema migrations, kept in code (not a directory scan) so they work the same from tsx, a
// bundle or a test. Append new migrations; never edit one that has shipped.
import type { Knex } from 'knex';

interface Migration {
  name: string;
  up(db: Knex): Promise<void>;
  down(db: Knex): Promise<void>;
}

const initial: Migration = {
  name: '0001_initial',
  async up(db) {
    await db.schema.createTable('organizations', (t) => {
      t.string('id').primary();
      t.string('name').notNullable().unique();
      t.bigInteger('created_at').notNullable();
    });
    await db.schema.createTable('connections', (t) => {
      t.string('id').primary();
      t.string('organization_id').notNullable().references('organizations.id');
      t.string('name').notNullable();
      t.string('provider').notNullable();
      t.text('settings').notNullable();
      t.text('aws');
      t.bigInteger('created_at').notNullable();
      t.integer('generation').notNullable().defaultTo(0);
      t.string('fleet_hash');
      t.integer('plan_version').notNullable().defaultTo(0);
      t.string('agent_id');
      t.string('agent_version');
      t.bigInteger('agent_last_seen_at');
      t.bigInteger('lease_expires_at');
      t.integer('applied_generation').notNullable().defaultTo(0);
      t.string('last_apply_result');
      t.text('last_error');
      t.unique(['organization_id', 'name']);
    });
    await db.schema.createTable('tokens', (t) => {
      t.string('id').primary();
      t.string('organization_id').notNullable().references('organizations.id');
      t.string('kind').notNullable();
      t.string('name').notNullable();
      t.string('hash').notNullable().unique();
      t.string('connection_id').references('connections.id');
      t.bigInteger('created_at').notNullable();
      t.bigInteger('last_used_at');
      t.index(['organization_id']);
    });
    await db.schema.createTable('projects', (t) => {
      t.string('id').primary();
      t.string('organization_id').notNullable().references('organizations.id');
      t.string('connection_id').notNullable().references('connections.id');
      t.string('name').notNullable();
      t.bigInteger('created_at').notNullable();
      t.unique(['organization_id', 'name']);
    });
    await db.schema.createTable('volumes', (t) => {
      t.string('id').primary();
      t.string('connection_id').notNullable().references('connections.id');
      t.string('project_id').notNullable().references('projects.id');
      t.string('platform').notNullable();
      t.integer('size_gb').notNullable();
      t.string('zone');
      t.string('status').notNullable();
      t.string('observed_state');
      t.string('observed_attached_to');
      t.string('observed_provider_id');
      t.bigInteger('created_at').notNullable();
      t.index(['connection_id', 'status']);
    });
    await db.schema.createTable('machines', (t) => {
      t.string('id').primary();
      t.string('organization_id').notNullable().references('organizations.id');
      t.string('connection_id').notNullable().references('connections.id');
      t.string('platform').notNullable();
      t.string('zone');
      t.string('project_id').references('projects.id');
      t.string('volume_id').references('volumes.id');
      t.string('desired_state').notNullable();
      t.string('status').notNullable();
      t.string('launch_path');
      t.text('failure');
      t.bigInteger('created_at').notNullable();
      t.bigInteger('started_at');
      t.bigInteger('stopped_at');
      t.bigInteger('idle_since');
      t.bigInteger('ready_at');
      t.integer('removed_generation');
      // Registration and contact
      t.bigInteger('registered_at');
      t.string('token_hash').unique();
      t.text('csr');
      t.string('endpoint_host');
      t.integer('endpoint_port');
      t.string('agent_version');
      t.string('instance_id');
      t.bigInteger('session_at');
      t.bigInteger('last_health_at');
      t.text('health');
      // The latest observation of the cloud-agent
      t.string('observed_state');
      t.string('observed_address');
      t.string('observed_zone');
      t.string('observed_provider_id');
      // The task and its certificates (the CA key sealed with the server secret)
      t.string('task_kind').notNullable();
      t.integer('task_generation').notNullable();
      t.text('task_reason').notNullable();
      t.string('task_project_id');
      t.string('task_volume_id');
      t.text('ca_certificate');
      t.text('ca_key_sealed');
      t.bigInteger('ca_not_after');
      t.text('server_certificate');
      // The machine's latest BuildKit report
      t.integer('buildkit_generation');
      t.string('buildkit_state');
      t.text('buildkit_error');
      t.index(['connection_id', 'status']);
    });
    await db.schema.createTable('builds', (t) => {
      t.string('id').primary();
      t.string('organization_id').notNullable().references('organizations.id');
      t.string('project_id').notNullable().references('projects.id');
      t.string('connection_id').notNullable().references('connections.id');
      t.string('status').notNullable();
      t.text('description');
      t.string('created_by');
      t.bigInteger('created_at').notNullable();
      t.bigInteger('deadline').notNullable();
      t.bigInteger('last_seen_at').notNullable();
      t.bigInteger('finished_at');
      t.text('error');
      t.bigInteger('build_ms');
      t.index(['organization_id', 'created_at']);
      t.index(['connection_id', 'status']);
    });
    await db.schema.createTable('builder_requests', (t) => {
      t.string('build_id').notNullable().references('builds.id');
      t.string('platform').notNullable();
      t.string('connection_id').notNullable().references('connections.id');
      t.string('project_id').notNullable().references('projects.id');
      t.text('csr').notNullable();
      t.string('state').notNullable();
      t.text('reason').notNullable();
      t.string('path');
      t.string('machine_id').references('machines.id');
      t.text('client_certificate');
      t.bigInteger('acquire_deadline').notNullable();
      t.bigInteger('assigned_at');
      t.integer('assigned_generation');
      t.bigInteger('requested_at').notNullable();
      t.bigInteger('picked_up_at');
      t.bigInteger('machine_started_at');
      t.bigInteger('registered_at');
      t.bigInteger('ready_at');
      t.bigInteger('answered_at');
      t.primary(['build_id', 'platform']);
      t.index(['connection_id', 'state']);
    });
    await db.schema.createTable('audit_records', (t) => {
      t.string('id').primary();
      t.string('connection_id').notNullable().references('connections.id');
      t.string('kind').notNullable();
      t.integer('generation');
      t.string('result');
      t.text('summary').notNullable();
      t.text('steps').notNullable();
      t.text('diff').notNullable();
      t.text('error');
      t.string('agent_id');
      t.bigInteger('created_at').notNullable();
      // A retried sync repeats its reports; this keeps one record per report.
      t.string('dedupe_key').notNullable();
      t.unique(['connection_id', 'dedupe_key']);
      t.index(['connection_id', 'created_at']);
    });
    await db.schema.createTable('capacity_failures', (t) => {
      t.increments('id');
      t.string('connection_id').notNullable().references('connections.id');
      t.string('machine_id').notNullable();
      t.string('platform').notNullable();
      t.string('zone');
      t.text('reason').notNullable();
      t.bigInteger('at').notNullable();
      t.unique(['connection_id', 'machine_id', 'at']);
    });
  },
  async down(db) {
    for (const table of [
      'capacity_failures',
      'audit_records',
      'builder_requests',
      'builds',
      'machines',
      'volumes',
      'projects',
      'tokens',
      'connections',
      'organizations',
    ]) {
      await db.schema.dropTable(table);
    }
  },
};

/**
 * When a machine first used its machine token. Until then a machine-agent that lost the answer
 * to its registration (killed before storing it) may register again with the same key.
 */
const machineTokenUse: Migration = {
  name: '0002_machine_token_used_at',
  async up(db) {
    await db.schema.alterTable('machines', (t) => {
      t.bigInteger('token_used_at');
    });
  },
  async down(db) {
    await db.schema.alterTable('machines', (t) => {
      t.dropColumn('token_used_at');
    });
  },
};

const migrations: Migration[] = [initial, machineTokenUse];

export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => migrations,
  getMigrationName: (m) => m.name,
  getMigration: async (m) => m,
};
