/**
 * The resource kinds the generic verbs (`temper get|list|delete|cancel|resume <kind> [id]`)
 * know: their REST collection, the id parameter of a create, which custom methods they have,
 * and the columns of their `list -o text` table.
 */
import { at, type Column, cell, field } from '../output.js';

export interface Kind {
  /** The CLI word: sftj, dataset, ... */
  key: string;
  collection: string;
  /** `?{singular}Id=` on create. */
  singular: string;
  label: string;
  job: boolean;
  cancel: boolean;
  resume: boolean;
  columns: Column[];
}

const created = field('CREATED', 'createTime');

const progress: Column = {
  header: 'PROGRESS',
  get: (r) => {
    const step = at(r, 'jobProgress.step');
    const total = at(r, 'jobProgress.totalSteps');
    return typeof step === 'number' && typeof total === 'number' && total > 0
      ? `${step}/${total}`
      : '-';
  },
};

const shortState: Column = {
  header: 'STATE',
  get: (r) => cell(r.state).replace(/^JOB_STATE_/, ''),
};

const jobColumns = [
  field('NAME', 'name'),
  shortState,
  progress,
  field('OUTPUT MODEL', 'outputModel'),
  created,
];

function job(key: string, collection: string, singular: string, label: string): Kind {
  return {
    key,
    collection,
    singular,
    label,
    job: true,
    cancel: true,
    resume: true,
    columns: jobColumns,
  };
}

function plain(
  key: string,
  collection: string,
  singular: string,
  label: string,
  columns: Column[],
): Kind {
  return {
    key,
    collection,
    singular,
    label,
    job: false,
    cancel: false,
    resume: false,
    columns: [field('NAME', 'name'), ...columns],
  };
}

export const KINDS: readonly Kind[] = [
  job('sftj', 'supervisedFineTuningJobs', 'supervisedFineTuningJob', 'SFT job'),
  job('dpoj', 'dpoJobs', 'dpoJob', 'DPO job'),
  job('orpoj', 'orpoJobs', 'orpoJob', 'ORPO job'),
  job('rftj', 'reinforcementFineTuningJobs', 'reinforcementFineTuningJob', 'RFT job'),
  {
    ...job('trainer', 'rlorTrainerJobs', 'rlorTrainerJob', 'trainer job'),
    cancel: true,
    columns: [
      field('NAME', 'name'),
      shortState,
      field('BASE MODEL', 'baseModel'),
      field('LORA RANK', 'loraRank'),
      created,
    ],
  },
  plain('dataset', 'datasets', 'dataset', 'dataset', [
    field('STATE', 'state'),
    field('KIND', 'kind'),
    field('EXAMPLES', 'exampleCount'),
    created,
  ]),
  plain('model', 'models', 'model', 'model', [
    field('KIND', 'kind'),
    field('STATE', 'state'),
    field('BASE MODEL', 'baseModel'),
    created,
  ]),
  plain('deployment', 'deployments', 'deployment', 'deployment', [
    field('STATE', 'state'),
    field('BASE MODEL', 'baseModel'),
    field('REPLICAS', 'replicaCount'),
    field('GATEWAY', 'gatewayUrl'),
  ]),
  plain('evaluator', 'evaluators', 'evaluator', 'evaluator', [
    field('STATE', 'state'),
    field('LANGUAGE', 'language'),
    created,
  ]),
  plain('secret', 'secrets', 'secret', 'secret', [field('KEY NAME', 'keyName'), created]),
];

export const KIND_WORDS = KINDS.map((k) => k.key);

/** sftj, sftjs, supervisedFineTuningJobs, ... → the kind. */
export function findKind(word: string): Kind {
  const w = word.toLowerCase();
  const kind = KINDS.find(
    (k) => k.key === w || `${k.key}s` === w || k.collection.toLowerCase() === w,
  );
  if (!kind) throw new Error(`unknown kind '${word}': use one of ${KIND_WORDS.join(', ')}`);
  return kind;
}

export function kindOf(key: string): Kind {
  return findKind(key);
}

export const checkpointColumns: Column[] = [
  field('NAME', 'name'),
  field('TYPE', 'checkpointType'),
  field('PROMOTABLE', 'promotable'),
  field('RESUMABLE', 'resumable'),
  created,
];
