import { commSuite } from './suite.js';

commSuite('inproc');
