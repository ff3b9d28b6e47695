import { defineCommand } from "citty";
export default defineCommand({ meta: { name: "run-program", description: "(issue 16: in progress)" }, run() {} });
