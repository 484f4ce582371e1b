import { commSuite } from './suite.js';

commSuite('threads');
