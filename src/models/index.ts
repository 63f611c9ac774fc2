// Models brought by users: the public face of src/models (validation of an HF model directory
// before an import may use it).
export {
  type ModelProblem,
  type ModelValidation,
  validateAdapterDirectory,
  validateModelDirectory,
} from './validate.js';
