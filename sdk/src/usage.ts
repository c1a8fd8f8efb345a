// A small typed client over the generated types: if the OpenAPI document loses
// a path, a parameter or a field the frontend relies on, this stops compiling.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

const api = createClient<paths>({ baseUrl: "http://localhost:8000" });

type Token = components["schemas"]["Token"];
type WorldItem = components["schemas"]["WorldItem"];
type LessonDetail = components["schemas"]["LessonDetail"];

export async function login(email: string, password: string): Promise<Token | undefined> {
  const { data } = await api.POST("/api/auth/token", { body: { email, password } });
  if (data) {
    const access: string = data.access_token;
    void access;
  }
  return data;
}

export async function catalogue(token: string): Promise<WorldItem[]> {
  const { data, error } = await api.GET("/api/courses/worlds", {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (error || !data) return [];
  return data.map((w) => ({ ...w, title: w.title.trim() }));
}

export async function lesson(lessonId: string): Promise<LessonDetail | undefined> {
  const { data } = await api.GET("/api/courses/lessons/{lesson_id}", {
    params: { path: { lesson_id: lessonId } },
  });
  return data;
}

export async function publicProfile(username: string): Promise<number | undefined> {
  const { data } = await api.GET("/api/users/public/{username}", {
    params: { path: { username } },
  });
  return data?.xp;
}
