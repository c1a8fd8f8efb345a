//! Demo data for `mambo dev` and `mambo seed`. Idempotent: a world is filled
//! only when its slug is new, accounts only when their email is new. Tags and
//! badge definitions come from the migrations.

use crate::users::{NewUser, create_user};
use crate::{Result, auth, economy};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@mamboguild.dev";
pub const ADMIN_PASSWORD: &str = "MamboAdmin2026";
pub const STUDENT_EMAIL: &str = "student@mamboguild.dev";
pub const STUDENT_PASSWORD: &str = "MamboStudent2026";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub worlds_created: usize,
    pub lessons_created: usize,
    pub users_created: usize,
}

struct L {
    title: &'static str,
    week: i32,
    day: i32,
    order: i32,
    kind: &'static str,
    boss: bool,
    minutes: i32,
}

const fn l(title: &'static str, week: i32, day: i32, order: i32, kind: &'static str) -> L {
    L {
        title,
        week,
        day,
        order,
        kind,
        boss: false,
        minutes: 8,
    }
}

const fn boss(title: &'static str, week: i32, day: i32) -> L {
    L {
        title,
        week,
        day,
        order: 9,
        kind: "video",
        boss: true,
        minutes: 15,
    }
}

struct W {
    slug: &'static str,
    title: &'static str,
    description: &'static str,
    difficulty: &'static str,
    course_type: &'static str,
    is_free: bool,
    order: i32,
    objectives: [&'static str; 3],
    levels: &'static [(&'static str, &'static [L])],
}

const WORLDS: &[W] = &[
    W {
        slug: "mambo-fundamentals",
        title: "Mambo Fundamentals",
        description: "Timing on 2, the basic step and your first turns.",
        difficulty: "Beginner",
        course_type: "course",
        is_free: true,
        order: 0,
        objectives: [
            "Dance the basic step on 2",
            "Hear the conga slap",
            "Lead and follow a right turn",
        ],
        levels: &[
            (
                "Feel the Clave",
                &[
                    l("Welcome to the Guild", 1, 1, 0, "video"),
                    l("Finding the 2", 1, 1, 1, "video"),
                    l("A Short History of Mambo", 1, 2, 0, "history"),
                    l("Timing Check", 1, 3, 0, "quiz"),
                ],
            ),
            (
                "Basic Step",
                &[
                    l("Forward and Back Basic", 2, 1, 0, "video"),
                    l("Side Basic", 2, 2, 0, "video"),
                    boss("Boss Battle: One Minute of Basics", 2, 3),
                ],
            ),
            (
                "First Turns",
                &[
                    l("Right Turn Prep", 3, 1, 0, "video"),
                    l("Spotting", 3, 1, 1, "video"),
                ],
            ),
        ],
    },
    W {
        slug: "shines-choreo",
        title: "Shines Choreography",
        description: "A 32-count shine routine, built day by day.",
        difficulty: "Intermediate",
        course_type: "choreo",
        is_free: false,
        order: 1,
        objectives: [
            "Learn four 8-count shines",
            "Chain them on the music",
            "Perform the full routine",
        ],
        levels: &[
            (
                "Counts 1-16",
                &[
                    l("Suzie Q", 1, 1, 0, "video"),
                    l("Mambo Jazz", 1, 2, 0, "video"),
                ],
            ),
            (
                "Counts 17-32",
                &[
                    l("Pachanga Shine", 2, 1, 0, "video"),
                    l("Choreo Quiz", 2, 2, 0, "quiz"),
                    boss("Boss Battle: Full Routine", 2, 3),
                ],
            ),
        ],
    },
    W {
        slug: "musicality-history",
        title: "Musicality and History",
        description: "Where mambo came from and how to hear it.",
        difficulty: "Open",
        course_type: "topic",
        is_free: false,
        order: 2,
        objectives: [
            "Name the instruments of a salsa band",
            "Follow the montuno",
            "Know the Palladium era",
        ],
        levels: &[(
            "The Palladium Era",
            &[
                l("Havana to New York", 1, 1, 0, "history"),
                l("The Instruments", 1, 2, 0, "video"),
                l("Ear Training Quiz", 1, 3, 0, "quiz"),
            ],
        )],
    },
];

fn content_for(kind: &str, title: &str) -> Option<serde_json::Value> {
    match kind {
        "quiz" => Some(json!({
            "blocks": [
                {"type": "text", "content": format!("## {title}\nAnswer the questions below.")},
                {"type": "quiz", "questions": [
                    {"question": "On which beat does the on2 break forward happen?",
                     "options": ["1", "2", "3", "5"], "correct_answer": 1,
                     "explanation": "We break on 2 (and 6)."},
                    {"question": "Which instrument marks the 2 and 6?",
                     "options": ["Conga slap", "Trumpet", "Piano", "Bass"], "correct_answer": 0}
                ]}
            ]
        })),
        "history" => Some(json!({
            "blocks": [
                {"type": "text", "content": format!("# {title}\nIn the 1950s the Palladium Ballroom in New York became the home of mambo, with Tito Puente, Machito and Tito Rodríguez on the bandstand.")},
                {"type": "image", "url": "https://images.mamboguild.dev/palladium.jpg", "caption": "The Palladium Ballroom"}
            ],
            "notes": "Read, then listen to 'Ran Kan Kan'."
        })),
        _ => Some(json!({"blocks": [
            {"type": "video"},
            {"type": "text", "content": format!("Notes for **{title}**: count out loud.")}
        ]})),
    }
}

pub async fn seed(pool: &PgPool) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let mut tx = pool.begin().await?;
    for w in WORLDS {
        let world_id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO worlds (title, description, slug, order_index, is_free, difficulty,
                 is_published, course_type, objectives)
             VALUES ($1, $2, $3, $4, $5, $6, true, $7, $8)
             ON CONFLICT (slug) DO NOTHING RETURNING id",
        )
        .bind(w.title)
        .bind(w.description)
        .bind(w.slug)
        .bind(w.order)
        .bind(w.is_free)
        .bind(w.difficulty)
        .bind(w.course_type)
        .bind(json!(w.objectives))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(world_id) = world_id else { continue };
        report.worlds_created += 1;
        let mut prev: Option<Uuid> = None;
        for (i, (title, lessons)) in w.levels.iter().enumerate() {
            let level_id: Uuid = sqlx::query_scalar(
                "INSERT INTO levels (world_id, title, order_index, description, x_position, y_position, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(world_id)
            .bind(title)
            .bind(i as i32)
            .bind(format!("Module {}: {title}", i + 1))
            .bind(20.0 + 30.0 * i as f64)
            .bind(50.0)
            .bind(format!("You can dance {title}"))
            .fetch_one(&mut *tx)
            .await?;
            if let Some(p) = prev {
                sqlx::query(
                    "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3)",
                )
                .bind(world_id)
                .bind(p)
                .bind(level_id)
                .execute(&mut *tx)
                .await?;
            }
            prev = Some(level_id);
            for les in lessons.iter() {
                sqlx::query(
                    "INSERT INTO lessons (level_id, title, description, video_url, xp_value, order_index,
                         is_boss_battle, duration_minutes, lesson_type, week_number, day_number, content_json)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(level_id)
                .bind(les.title)
                .bind(format!("{} (week {}, day {})", les.title, les.week, les.day))
                .bind(if les.kind == "video" { "https://example.com/video/placeholder" } else { "" })
                .bind(if les.boss { 200 } else { 50 })
                .bind(les.order)
                .bind(les.boss)
                .bind(les.minutes)
                .bind(les.kind)
                .bind(les.week)
                .bind(les.day)
                .bind(content_for(les.kind, les.title))
                .execute(&mut *tx)
                .await?;
                report.lessons_created += 1;
            }
        }
    }
    for (email, password, role, first, last, username, pro) in [
        (
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            "admin",
            "Ada",
            "Admin",
            "admin",
            true,
        ),
        (
            STUDENT_EMAIL,
            STUDENT_PASSWORD,
            "student",
            "Sam",
            "Student",
            "sam_student",
            false,
        ),
    ] {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM users WHERE email=$1)")
            .bind(email)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            continue;
        }
        let mut nu = NewUser::student(email, first, last);
        nu.role = role.into();
        nu.username = Some(username.into());
        nu.is_verified = true;
        nu.hashed_password = Some(auth::hash_password(password.to_string()).await?);
        let id = create_user(&mut tx, &nu).await?;
        economy::credit(&mut tx, id, 15, economy::reason::NEW_USER_BONUS, None, None).await?;
        if pro {
            sqlx::query(
                "UPDATE subscriptions SET status='active', tier='performer' WHERE user_id=$1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        report.users_created += 1;
    }
    tx.commit().await?;
    Ok(report)
}
