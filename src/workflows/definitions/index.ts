// The workflow bundle's entry: every workflow the workers register.
export { promotionWorkflow } from './promotion.js';
export { trainerJobWorkflow } from './trainer-job.js';
export { trainingJobWorkflow } from './training-job.js';
