import { defineCommand } from "citty";
export default defineCommand({ meta: { name: "agent", description: "(issue 16: in progress)" }, run() {} });
